"""The escrow's batched station read (a consumer batch's requests in one round trip) gives what
one ``StationRegistry.station`` call per station gives, on both chains it runs on: the
in-process one and a JSON-RPC node (the shared Hardhat node)."""

from __future__ import annotations

import os

from eth_utils.crypto import keccak
from web3 import Web3

from chargenet.core.chain import StationInfo, deploy_chargenet, send
from chargenet.escrow.chain import ChainReader

INFO = StationInfo(
    latitude_e6=52_520_008,
    longitude_e6=-13_404_954,  # negative: the decoder must keep the sign of an int32
    connector_count=2,
    max_power_w=150_000,
    tariff_id=b"TARIFF-AC-1".ljust(32, b"\0"),
    tariff_hash=keccak(b'{"id":"TARIFF-AC-1"}'),
    meter_key_hash=keccak(b"meter public key"),
)


def test_stations_in_one_batch_match_one_call_each(either_chain: Web3) -> None:
    w3 = either_chain
    admin = w3.eth.accounts[0]
    deployment = deploy_chargenet(w3, admin=admin, minter=admin)
    prefix = os.urandom(4)
    active, retired, unknown = (prefix + name.ljust(28, b"\0") for name in (b"A", b"R", b"U"))
    for station in (active, retired):
        send(w3, deployment.registry.functions.register(station, INFO.as_tuple(), []), admin)
    send(w3, deployment.registry.functions.retire(retired), admin)
    reader = ChainReader(w3, deployment.escrow.address)

    found = reader.stations([active, retired, unknown, active])

    assert list(found) == [active, retired, unknown]  # each once, in the order asked
    assert found == {s: reader.station(s) for s in (active, retired, unknown)}
    assert found[unknown] is None
    first, second = found[active], found[retired]
    assert first is not None and second is not None
    assert (first.active, second.active) == (True, False)
    assert first.cpo == admin and first.info == INFO
    assert reader.stations([]) == {}
