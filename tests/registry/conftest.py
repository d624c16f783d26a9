"""Fixtures of the registry's tests: a private Hardhat node with chargenet deployed, a migrated
registry database, the app, and helpers that compare the index with the chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from web3 import Web3

from chargenet.core.chain import Deployment
from chargenet.core.db import Database, OutboxMessage
from chargenet.core.envelope import Envelope
from chargenet.core.events import EVENT_TYPES
from chargenet.registry.chain import station_key
from chargenet.registry.indexer import Indexer
from chargenet.registry.main import migrate
from chargenet.registry.models import Station, StationVersion
from chargenet.registry.rpc import ChainReader
from tests.registry.harness import deploy, private_hardhat


@dataclass
class Chain:
    url: str
    w3: Web3
    deployment: Deployment
    start_block: int

    def rpc(self, method: str, *params: object) -> object:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]


@pytest.fixture(scope="module")
def chain(rpc_url: str) -> Iterator[Chain]:
    """A Hardhat node of this module's own (``rpc_url`` only gates on the components being
    installed): the tests rewind it with evm_revert, which would break others on the shared one."""
    with private_hardhat() as url:
        w3, deployment = deploy(url)
        yield Chain(url, w3, deployment, int(w3.eth.block_number))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/registry.db")
    migrate(database)
    yield database
    database.dispose()


def indexer_for(db: Database, chain: Chain, **kwargs: object) -> Indexer:
    return Indexer(
        db,
        ChainReader(chain.w3),
        registry_address=chain.deployment.registry.address,
        escrow_address=chain.deployment.escrow.address,
        start_block=chain.start_block,
        confirmations=0,
        **kwargs,  # type: ignore[arg-type]
    )


def chain_stations(chain: Chain) -> dict[str, tuple[object, ...]]:
    """Every station as the contract has it now, in the index's column order."""
    registry = chain.deployment.registry
    stations: dict[str, tuple[object, ...]] = {}
    for index in range(1, registry.functions.stationCount().call() + 1):
        raw_id, cpo, active, info = registry.functions.stationAt(index).call()
        lat, lon, connectors, power, tariff_id, tariff_hash, meter = info
        stations[station_key(raw_id)] = (
            cpo,
            index,
            active,
            lat,
            lon,
            connectors,
            power,
            station_key(tariff_id),
            "0x" + tariff_hash.hex(),
            "0x" + meter.hex(),
        )
    return stations


def index_stations(db: Database) -> dict[str, tuple[object, ...]]:
    with db.session() as session:
        return {
            s.station_id: (
                s.cpo_address,
                s.station_index,
                s.active,
                s.latitude_e6,
                s.longitude_e6,
                s.connector_count,
                s.max_power_w,
                s.tariff_id,
                s.tariff_hash,
                s.meter_key_hash,
            )
            for s in session.scalars(sa.select(Station))
        }


def chain_log_ids(chain: Chain, to_block: int | None = None) -> list[tuple[int, int, str]]:
    """(block, log index, tx hash) of every station log on the chain, in order."""
    registry = chain.deployment.registry
    logs = []
    for name in ("StationRegistered", "StationUpdated", "StationRetired"):
        event = getattr(registry.events, name)
        for log in event.get_logs(
            from_block=chain.start_block, to_block=to_block if to_block is not None else "latest"
        ):
            logs.append((log.blockNumber, log.logIndex, "0x" + log.transactionHash.hex()))
    return sorted(logs)


def index_log_ids(db: Database) -> list[tuple[int, int, str]]:
    with db.session() as session:
        rows = session.execute(
            sa.select(StationVersion.block_number, StationVersion.log_index, StationVersion.tx_hash)
        ).all()
    return sorted((int(b), int(i), str(t)) for b, i, t in rows)


def outbox_events(db: Database) -> list[Envelope]:
    """Every outbox event, parsed with its own schema (so a malformed payload fails here)."""
    with db.session() as session:
        rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.seq)).all()
    envelopes = [Envelope.from_bytes(row.payload) for row in rows]
    for envelope in envelopes:
        envelope.payload(EVENT_TYPES[envelope.type])
    return envelopes
