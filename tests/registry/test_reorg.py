"""Reorganisations on the real Hardhat node: evm_snapshot, register, mine, evm_revert, register
something else; the index must end equal to the chain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chargenet.core.chain import send
from chargenet.core.db import Database
from chargenet.registry.metrics import REORGS
from tests.registry.conftest import (
    Chain,
    chain_log_ids,
    chain_stations,
    index_log_ids,
    index_stations,
    indexer_for,
    outbox_events,
)
from tests.registry.harness import info, station_id

pytestmark = pytest.mark.hardhat


def _register(chain: Chain, n: int, sender_index: int = 1, **kwargs: int) -> None:
    send(
        chain.w3,
        chain.deployment.registry.functions.register(
            station_id(n, "DE*REO*E"), info(**kwargs).as_tuple(), []
        ),
        list(chain.w3.eth.accounts)[sender_index],
    )


def _assert_index_is_chain(db: Database, chain: Chain) -> None:
    assert index_stations(db) == chain_stations(chain)
    assert index_log_ids(db) == chain_log_ids(chain)


def test_reorg_undoes_rolled_back_blocks_and_applies_the_new_fork(
    db: Database, chain: Chain
) -> None:
    registry, cpo = chain.deployment.registry, list(chain.w3.eth.accounts)[1]
    indexer = indexer_for(db, chain)
    _register(chain, 1)
    _register(chain, 2)
    indexer.catch_up()
    _assert_index_is_chain(db, chain)
    reorgs_before = REORGS._value.get()

    snapshot = chain.rpc("evm_snapshot")
    _register(chain, 3)  # rolled back below
    send(
        chain.w3,
        registry.functions.update(
            station_id(1, "DE*REO*E"), replace(info(), max_power_w=22_000).as_tuple()
        ),
        cpo,
    )
    send(chain.w3, registry.functions.retire(station_id(2, "DE*REO*E")), cpo)
    chain.rpc("evm_mine")
    indexer.catch_up()
    assert set(index_stations(db)) == {"DE*REO*E000001", "DE*REO*E000002", "DE*REO*E000003"}
    assert index_stations(db)["DE*REO*E000001"][6] == 22_000
    assert index_stations(db)["DE*REO*E000002"][2] is False
    rolled_back_head = chain.w3.eth.block_number

    assert chain.rpc("evm_revert", snapshot) is True
    _register(chain, 4, lat=48_137_154, lon=11_576_124)  # something else, on the new fork
    while chain.w3.eth.block_number <= rolled_back_head:  # a longer fork, as a real reorg has
        chain.rpc("evm_mine")
    indexer.catch_up()

    _assert_index_is_chain(db, chain)
    stations = index_stations(db)
    assert "DE*REO*E000003" not in stations
    assert stations["DE*REO*E000001"][6] == 150_000  # the update was undone
    assert stations["DE*REO*E000002"][2] is True  # the retirement was undone
    assert stations["DE*REO*E000004"][3:5] == (48_137_154, 11_576_124)
    assert REORGS._value.get() == reorgs_before + 1

    # Consumers hear about the undo: station 3 is gone, 1 and 2 are back as they were.
    events = outbox_events(db)
    undo = {(e.type, e.subject) for e in events if e.id.startswith("reorg-")}
    assert undo == {
        ("chargenet.station.retired.v1", "DE*REO*E000003"),
        ("chargenet.station.updated.v1", "DE*REO*E000001"),
        ("chargenet.station.updated.v1", "DE*REO*E000002"),
    }
    assert len({e.id for e in events}) == len(events)


def test_reorg_to_a_shorter_fork_is_found_while_idle(db: Database, chain: Chain) -> None:
    """The revert leaves the head below the cursor: the cursor's block no longer exists."""
    indexer = indexer_for(db, chain)
    indexer.catch_up()
    snapshot = chain.rpc("evm_snapshot")
    _register(chain, 10)
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    indexer.catch_up()
    assert "DE*REO*E000010" in index_stations(db)
    chain.rpc("evm_revert", snapshot)
    result = indexer.step()
    assert result.rolled_back_to is not None
    indexer.catch_up()
    _assert_index_is_chain(db, chain)
    assert "DE*REO*E000010" not in index_stations(db)


def test_confirmation_depth_holds_back_recent_blocks(db: Database, chain: Chain) -> None:
    indexer = indexer_for(db, chain)
    indexer.confirmations = 3
    indexer.catch_up()
    _register(chain, 20)
    indexer.catch_up()
    assert "DE*REO*E000020" not in index_stations(db)
    for _ in range(3):
        chain.rpc("evm_mine")
    indexer.catch_up()
    assert "DE*REO*E000020" in index_stations(db)
