"""StationRegistry: register, update, operators, retire; only the owner or its operators."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eth_utils.crypto import keccak

from chargenet.core.chain import StationInfo

NEW = b"DE*CNT*E0099".ljust(32, b"\0")


def test_register_records_everything_and_emits(env: Any) -> None:
    registry = env.registry.functions
    count = registry.stationCount().call()
    receipt = env.send(registry.register(NEW, env.INFO.as_tuple(), [env.stranger]), env.other_cpo)
    (log,) = env.events(env.registry, "StationRegistered", receipt)
    assert log.args["id"] == NEW and log.args["cpo"] == env.other_cpo
    assert log.args["index"] == count + 1
    assert log.args["tariffHash"] == env.INFO.tariff_hash
    assert log.args["meterKeyHash"] == env.INFO.meter_key_hash
    (operator_log,) = env.events(env.registry, "OperatorSet", receipt)
    assert operator_log.args["operator"] == env.stranger and operator_log.args["allowed"]

    index, cpo, active, info = registry.station(NEW).call()
    assert (index, cpo, active) == (count + 1, env.other_cpo, True)
    assert StationInfo.from_tuple(info) == env.INFO
    assert registry.stationAt(index).call()[0] == NEW
    assert registry.indexOf(NEW).call() == index
    assert registry.openRef(NEW).call() == index
    assert registry.isOperator(NEW, env.stranger).call()
    assert registry.settlerOf(index, env.stranger).call() == env.other_cpo
    assert registry.settlerOf(index, env.other_cpo).call() == env.other_cpo
    assert registry.settlerOf(index, env.cpo).call() == "0x" + "00" * 20


def test_register_rejects_bad_input(env: Any) -> None:
    registry = env.registry.functions
    env.fails(
        registry.register(env.STATION, env.INFO.as_tuple(), []), env.stranger, "StationExists"
    )
    env.fails(registry.register(bytes(32), env.INFO.as_tuple(), []), env.stranger, "ZeroStationId")
    for bad in (
        replace(env.INFO, latitude_e6=90_000_001),
        replace(env.INFO, latitude_e6=-90_000_001),
        replace(env.INFO, longitude_e6=180_000_001),
        replace(env.INFO, longitude_e6=-180_000_001),
    ):
        env.fails(registry.register(NEW, bad.as_tuple(), []), env.cpo, "InvalidLocation")
    for bad in (replace(env.INFO, connector_count=0), replace(env.INFO, max_power_w=0)):
        env.fails(registry.register(NEW, bad.as_tuple(), []), env.cpo, "InvalidConnectors")
    zero = "0x" + "00" * 20
    env.fails(registry.register(NEW, env.INFO.as_tuple(), [zero]), env.cpo, "ZeroAddress")
    env.fails(registry.indexOf(NEW), env.cpo, "UnknownStation")
    env.fails(registry.openRef(NEW), env.cpo, "UnknownStation")
    env.fails(registry.stationAt(999), env.cpo, "UnknownStation")


def test_owner_and_operator_update_others_cannot(env: Any) -> None:
    registry = env.registry.functions
    tariff = replace(env.INFO, tariff_hash=keccak(b"new tariff"), max_power_w=300_000)
    receipt = env.send(registry.update(env.STATION, tariff.as_tuple()), env.operator)
    (log,) = env.events(env.registry, "StationUpdated", receipt)
    assert log.args["by"] == env.operator and log.args["tariffHash"] == tariff.tariff_hash
    assert StationInfo.from_tuple(registry.station(env.STATION).call()[3]) == tariff
    env.send(registry.update(env.STATION, env.INFO.as_tuple()), env.cpo)
    env.fails(
        registry.update(env.STATION, tariff.as_tuple()),
        env.stranger,
        "NotStationOwnerOrOperator",
        env.STATION,
        env.stranger,
    )
    bad = replace(env.INFO, connector_count=0)
    env.fails(registry.update(env.STATION, bad.as_tuple()), env.cpo, "InvalidConnectors")
    env.fails(registry.update(NEW, env.INFO.as_tuple()), env.cpo, "UnknownStation")


def test_only_the_owner_manages_operators(env: Any) -> None:
    registry = env.registry.functions
    env.fails(
        registry.setOperator(env.STATION, env.stranger, True), env.operator, "NotStationOwner"
    )
    receipt = env.send(registry.setOperator(env.STATION, env.stranger, True), env.cpo)
    (log,) = env.events(env.registry, "OperatorSet", receipt)
    assert log.args["allowed"]
    assert registry.isOperator(env.STATION, env.stranger).call()
    env.send(registry.setOperator(env.STATION, env.operator, False), env.cpo)
    assert not registry.isOperator(env.STATION, env.operator).call()
    env.fails(
        registry.update(env.STATION, env.INFO.as_tuple()), env.operator, "NotStationOwnerOrOperator"
    )


def test_retire_is_owner_only_and_final(env: Any) -> None:
    registry = env.registry.functions
    env.fails(registry.retire(env.STATION), env.operator, "NotStationOwner")
    receipt = env.send(registry.retire(env.STATION), env.cpo)
    (log,) = env.events(env.registry, "StationRetired", receipt)
    assert log.args["id"] == env.STATION and log.args["cpo"] == env.cpo
    index, _, active, _ = registry.station(env.STATION).call()
    assert not active
    env.fails(registry.openRef(env.STATION), env.cpo, "StationRetiredError")
    env.fails(registry.retire(env.STATION), env.cpo, "StationRetiredError")
    env.fails(registry.update(env.STATION, env.INFO.as_tuple()), env.cpo, "StationRetiredError")
    env.fails(registry.setOperator(env.STATION, env.stranger, True), env.cpo, "StationRetiredError")
    # Open sessions there can still be closed by the same keys.
    assert registry.settlerOf(index, env.operator).call() == env.cpo
    # So a key can still be revoked (a leaked one would settle them all), by the owner only.
    env.fails(
        registry.setOperator(env.STATION, env.operator, False), env.operator, "NotStationOwner"
    )
    env.send(registry.setOperator(env.STATION, env.operator, False), env.cpo)
    assert registry.settlerOf(index, env.operator).call() == "0x" + "00" * 20
