"""The indexer on the in-process chain (``inprocess://eth-tester``, the embedded default), built
the way the service builds it: registrations, updates, retirements and operators, then a reorg
(eth-tester snapshot and revert). Nothing wraps the provider."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa

from chargenet.core.chain import IN_PROCESS, connect, deploy_chargenet, send
from chargenet.core.db import Database
from chargenet.registry.indexer import Indexer
from chargenet.registry.main import build_indexer
from chargenet.registry.models import OperatorChange
from chargenet.registry.settings import RegistrySettings
from tests.registry.conftest import (
    Chain,
    chain_log_ids,
    chain_stations,
    index_log_ids,
    index_stations,
    outbox_events,
)
from tests.registry.harness import info, station_id


@pytest.fixture
def chain() -> Iterator[Chain]:
    w3 = connect(IN_PROCESS)
    deployment = deploy_chargenet(w3, admin=w3.eth.accounts[0])
    yield Chain(IN_PROCESS, w3, deployment, int(w3.eth.block_number))


def _indexer(db: Database, chain: Chain) -> Indexer:
    settings = RegistrySettings(
        chain_rpc_url=IN_PROCESS,
        registry_address=chain.deployment.registry.address,
        registry_escrow_address=chain.deployment.escrow.address,
        registry_start_block=chain.start_block,
        registry_confirmations=0,
        registry_batch_blocks=2,  # several ranges, so the range checks run more than once
    )
    return build_indexer(settings, db, chain.w3)


def _register(chain: Chain, n: int, operators: list[str] | None = None, **kwargs: int) -> None:
    send(
        chain.w3,
        chain.deployment.registry.functions.register(
            station_id(n, "DE*INP*E"), info(**kwargs).as_tuple(), operators or []
        ),
        list(chain.w3.eth.accounts)[1],
    )


def test_indexes_the_in_process_chain(db: Database, chain: Chain) -> None:
    registry, cpo = chain.deployment.registry, list(chain.w3.eth.accounts)[1]
    operator = list(chain.w3.eth.accounts)[5]
    for n in range(1, 6):
        _register(chain, n, [operator] if n == 1 else None, lat=52_000_000 + n)
    send(
        chain.w3,
        registry.functions.update(
            station_id(2, "DE*INP*E"), replace(info(), max_power_w=22_000).as_tuple()
        ),
        cpo,
    )
    send(chain.w3, registry.functions.retire(station_id(3, "DE*INP*E")), cpo)

    indexer = _indexer(db, chain)
    assert indexer.catch_up() == 8  # 5 registrations, 1 operator, 1 update, 1 retirement
    assert indexer.position().number == chain.w3.eth.block_number
    assert indexer.position().hash == "0x" + bytes(chain.w3.eth.get_block("latest")["hash"]).hex()

    stations = index_stations(db)
    assert stations == chain_stations(chain)
    assert stations["DE*INP*E000002"][6] == 22_000 and stations["DE*INP*E000003"][2] is False
    assert index_log_ids(db) == chain_log_ids(chain)
    with db.session() as session:
        operators = session.execute(sa.select(OperatorChange.station_id, OperatorChange.operator))
        assert list(operators) == [("DE*INP*E000001", operator)]
    types = [e.type.split(".")[2] for e in outbox_events(db)]
    assert types == ["registered"] * 5 + ["updated", "retired"]
    assert indexer.catch_up() == 0  # caught up: nothing applied twice


def test_reorg_on_the_in_process_chain(db: Database, chain: Chain) -> None:
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    indexer = _indexer(db, chain)
    _register(chain, 1)
    indexer.catch_up()
    snapshot = tester.take_snapshot()
    _register(chain, 2)  # rolled back below
    indexer.catch_up()
    assert set(index_stations(db)) == {"DE*INP*E000001", "DE*INP*E000002"}
    rolled_back_head = chain.w3.eth.block_number

    tester.revert_to_snapshot(snapshot)
    _register(chain, 3, lat=48_137_154)  # something else, on the new fork
    tester.mine_blocks(rolled_back_head + 1 - chain.w3.eth.block_number)
    indexer.catch_up()

    assert index_stations(db) == chain_stations(chain)
    assert set(index_stations(db)) == {"DE*INP*E000001", "DE*INP*E000003"}
    assert index_log_ids(db) == chain_log_ids(chain)
    undo = [(e.type, e.subject) for e in outbox_events(db) if e.id.startswith("reorg-")]
    assert undo == [("chargenet.station.retired.v1", "DE*INP*E000002")]
