"""Admission: subprotocol agreement and security profiles 1 (Basic), 2 (TLS + Basic), 3 (mTLS)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage, InvalidStatus

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.ocpp_sim import ChargePoint16, ChargePoint201, Protocol, open_socket
from tests.gateway.conftest import PASSWORD, credentials_json, endpoint, running_gateway
from tests.gateway.pki import CertificateAuthority


async def refused_status(coroutine: object) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await coroutine  # type: ignore[misc]
    return refused.value.response.status_code


def test_subprotocol_must_be_agreed(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            assert await refused_status(open_socket(endpoint(gateway), "CP-1", [])) == 400
            assert await refused_status(open_socket(endpoint(gateway), "CP-1", ["ocpp1.5"])) == 400
            both = await open_socket(endpoint(gateway), "CP-1", ["ocpp2.0.1", "ocpp1.6"])
            assert both.subprotocol == "ocpp2.0.1"
            await both.close()

    asyncio.run(scenario())


def test_profile_1_basic_auth_against_hashed_passwords(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            good = endpoint(gateway)
            cp = await ChargePoint16.connect(good, "CP-1")
            assert (await cp.boot()).status == "Accepted"
            await cp.close()
            wrong = endpoint(gateway, password="not-the-password-123")
            assert await refused_status(open_socket(wrong, "CP-1", Protocol.V16)) == 401
            bare = endpoint(gateway, password=None)
            assert await refused_status(open_socket(bare, "CP-1", Protocol.V16)) == 401
            assert await refused_status(open_socket(good, "CP-UNKNOWN", Protocol.V16)) == 404

    asyncio.run(scenario())


def test_profile_1_username_must_be_the_charge_point(bus: InMemoryBus) -> None:
    """CP-2's valid credentials do not open CP-1's path."""

    async def scenario() -> None:
        from websockets.asyncio.client import connect

        from chargenet.core.ocpp_sim import basic_auth_header

        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            with pytest.raises(InvalidStatus) as refused:
                await connect(
                    f"ws://127.0.0.1:{gateway.port}/ocpp/CP-1",
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers={"Authorization": basic_auth_header("CP-2", PASSWORD)},
                )
            assert refused.value.response.status_code == 401

    asyncio.run(scenario())


def test_profile_2_tls_with_basic_auth(bus: InMemoryBus, tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path, "cpo-ca")
    server = ca.issue("127.0.0.1", server=True)

    async def scenario() -> None:
        async with running_gateway(
            bus,
            security_profile=2,
            tls_cert_file=server.cert,
            tls_key_file=server.key,
        ) as gateway:
            secure = endpoint(gateway, ssl=ca.client_context())
            station = await ChargePoint201.connect(secure, "CP-1")
            assert (await station.boot()).status == "Accepted"
            await station.close()
            wrong = endpoint(gateway, password="not-the-password-123", ssl=ca.client_context())
            assert await refused_status(open_socket(wrong, "CP-1", Protocol.V201)) == 401
            # A charge point that does not trust the server's CA does not get through either.
            untrusting = endpoint(gateway, ssl=ssl.create_default_context())
            with pytest.raises(ssl.SSLError):
                await open_socket(untrusting, "CP-1", Protocol.V201)

    asyncio.run(scenario())


def test_profile_3_mutual_tls_against_the_cpo_ca(bus: InMemoryBus, tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path, "cpo-ca")
    foreign = CertificateAuthority(tmp_path, "other-ca")
    server = ca.issue("127.0.0.1", server=True)
    cp1 = ca.issue("CP-1")
    cp2 = ca.issue("CP-2")
    impostor = foreign.issue("CP-1")

    async def scenario() -> None:
        async with running_gateway(
            bus,
            ("CP-1", "CP-2"),
            security_profile=3,
            tls_cert_file=server.cert,
            tls_key_file=server.key,
            tls_ca_file=ca.files.cert,
            charge_points_json=credentials_json("CP-1", "CP-2", password_hash=None),
        ) as gateway:
            own = endpoint(gateway, password=None, ssl=ca.client_context(cp1))
            cp = await ChargePoint16.connect(own, "CP-1")
            assert (await cp.boot()).status == "Accepted"
            await cp.close()
            # CP-2's certificate is valid but is not CP-1's.
            other = endpoint(gateway, password=None, ssl=ca.client_context(cp2))
            assert await refused_status(open_socket(other, "CP-1", Protocol.V16)) == 403
            # A certificate from another CA, or none, fails the TLS handshake: the server drops
            # the connection before any HTTP response.
            for context in (ca.client_context(impostor), ca.client_context()):
                with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
                    socket = await open_socket(
                        endpoint(gateway, password=None, ssl=context), "CP-1", Protocol.V16
                    )
                    await socket.recv()

    asyncio.run(scenario())
