"""Admission: the path names a known charge point, a subprotocol is agreed, the security profile's
check passes (HTTP Basic against the stored hash, or the client certificate against the CPO's CA).
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response

from chargenet.gateway.credentials import CredentialStore
from chargenet.gateway.metrics import REFUSED_CONNECTIONS
from chargenet.gateway.ocppj import OcppVersion
from chargenet.gateway.settings import GatewaySettings, SecurityProfile

log = logging.getLogger(__name__)

PATH_PREFIX = "/ocpp/"
SUBPROTOCOLS = [OcppVersion.V201.value, OcppVersion.V16.value]


def charge_point_id_from_path(path: str) -> str | None:
    if not path.startswith(PATH_PREFIX):
        return None
    raw = path[len(PATH_PREFIX) :].split("?", 1)[0]
    identity = unquote(raw)
    if not identity or "/" in identity or len(identity) > 48:
        return None
    return identity


def offered_subprotocols(headers: Headers) -> list[str]:
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(item.strip() for item in value.split(",") if item.strip())
    return offered


def server_ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    if settings.security_profile < SecurityProfile.TLS_BASIC:
        return None
    assert settings.tls_cert_file and settings.tls_key_file
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # OCPP security whitepaper: TLS 1.2 at least.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.security_profile is SecurityProfile.MUTUAL_TLS:
        assert settings.tls_ca_file
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.tls_ca_file)
    return context


def _peer_common_name(connection: ServerConnection) -> str | None:
    ssl_object = connection.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class Admission:
    def __init__(self, settings: GatewaySettings, credentials: CredentialStore) -> None:
        self.settings = settings
        self.credentials = credentials

    def _refuse(
        self, connection: ServerConnection, status: http.HTTPStatus, reason: str, why: str
    ) -> Response:
        REFUSED_CONNECTIONS.labels(reason).inc()
        log.warning("refused %s: %s", connection.request.path if connection.request else "?", why)
        response = connection.respond(status, why + "\n")
        if status is http.HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic("chargenet")
        return response

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        identity = charge_point_id_from_path(request.path)
        if identity is None:
            return self._refuse(
                connection, http.HTTPStatus.NOT_FOUND, "path", "the path is /ocpp/{charge_point_id}"
            )
        if not set(offered_subprotocols(request.headers)) & set(SUBPROTOCOLS):
            return self._refuse(
                connection,
                http.HTTPStatus.BAD_REQUEST,
                "subprotocol",
                f"offer one of the subprotocols {', '.join(SUBPROTOCOLS)}",
            )
        if identity not in self.credentials:
            return self._refuse(
                connection, http.HTTPStatus.NOT_FOUND, "unknown", f"unknown charge point {identity}"
            )
        profile = self.settings.security_profile
        if profile is SecurityProfile.MUTUAL_TLS:
            # The TLS handshake already checked the chain against the CPO's CA; the certificate
            # must also be this charge point's own.
            name = _peer_common_name(connection)
            if name != identity:
                return self._refuse(
                    connection,
                    http.HTTPStatus.FORBIDDEN,
                    "certificate",
                    f"the client certificate is for {name!r}, not {identity}",
                )
        elif profile in (SecurityProfile.BASIC, SecurityProfile.TLS_BASIC):
            return await self._basic(connection, request, identity)
        return None

    async def _basic(
        self, connection: ServerConnection, request: Request, identity: str
    ) -> Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return self._refuse(
                connection, http.HTTPStatus.UNAUTHORIZED, "credentials", "missing credentials"
            )
        try:
            username, password = parse_authorization_basic(header)
        except InvalidHeader:
            return self._refuse(
                connection, http.HTTPStatus.UNAUTHORIZED, "credentials", "unsupported credentials"
            )
        # scrypt takes tens of milliseconds by design: never on the loop.
        valid = username == identity and await asyncio.to_thread(
            self.credentials.check, identity, password
        )
        if not valid:
            return self._refuse(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                "credentials",
                f"invalid credentials for {identity}",
            )
        return None


def select_subprotocol(connection: ServerConnection, subprotocols: list[str]) -> str | None:
    """The first subprotocol the charge point offered that the gateway speaks (its preference)."""
    for offered in subprotocols:
        if offered in SUBPROTOCOLS:
            return offered
    return None
