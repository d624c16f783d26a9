"""The live view folds several events of a session at once: one write of the samples, one price,
and no new version when nothing the driver sees changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.events import EscrowOpened, MeterReading, SessionPriced, SessionStarted
from chargenet.wallet.models import ChargingSession, MeterPoint
from chargenet.wallet.projection import SessionProjection
from tests.wallet.harness import CPO_ID, EUR, START, World, charge_point_of, requested


def envelope(data: EventData, subject: str) -> Envelope:
    return make_envelope(data, subject=subject, source="test")


def test_events_of_a_session_fold_into_one_write(env: World) -> None:
    session = requested(env, "fold")
    sid, station, cp = session.sid, session.station, session.cp
    driver, meter, start = session.driver, session.meter, START

    opened = EscrowOpened(
        session_id=sid,
        cpo_id=CPO_ID,
        station_id=station,
        charge_point_id=cp,
        connector_id=1,
        id_token="x",
        max_amount=10 * EUR,
        expires_at=start + timedelta(hours=4),
        tx_hash="0x" + "11" * 32,
    )
    projection = SessionProjection(env.wallet_db)

    def version() -> int:
        return env.session_row(sid).version

    before = version()
    batch = [
        envelope(opened, sid),
        session.started(meter_start_wh=1_000),
        meter(10, 3_000),
        meter(20, 5_000),
        meter(20, 5_000),  # the same sample again (a new event id): stored once
        meter(30, 6_000),
    ]
    with env.wallet_db.session() as session:
        projection.fold(session, batch)
    with env.wallet_db.session() as session:
        row = session.get(ChargingSession, sid)
        assert row is not None
        points = session.scalar(sa.select(sa.func.count()).where(MeterPoint.session_id == sid))
        assert (row.state, row.energy_wh, points) == ("charging", 5_000, 4)
        assert row.cost_so_far == 2_980_000  # (0.50 + 5 kWh x 0.40) x 1.19 = 2.975
        assert row.version == before + 1  # one change the driver sees, one version

    # A redelivered sample changes nothing the driver sees: no new version, no row update.
    with env.wallet_db.session() as session:
        projection.fold(session, [meter(30, 6_000)])
    assert version() == before + 1
    # Events one by one (the per-event handler) give the same view as the batch.
    projection(meter(40, 7_000))
    view = env.wallet.get(f"/v1/sessions/{sid}", headers=driver.headers).json()
    assert (view["energy_wh"], view["cost_so_far"], view["version"]) == (
        6_000,
        3_450_000,  # (0.50 + 6 kWh x 0.40) x 1.19 = 3.451
        before + 2,
    )


def test_a_batch_of_several_sessions_applies_once(env: World) -> None:
    """The bus's batch handler: events of two sessions in one transaction, each session priced
    on its own samples; the same batch delivered again (a consumer restart) changes nothing."""
    station = env.station()
    env.charge_point_online(station)
    driver = env.driver()
    assert env.top_up(driver, 20 * EUR).status_code == 201
    sids = [
        env.wallet.post(
            "/v1/sessions",
            json={"station_id": station, "connector_id": "1", "max_amount": 5 * EUR},
            headers={**driver.headers, "Idempotency-Key": f"batch-{n}"},
        ).json()["session_id"]
        for n in range(2)
    ]
    cp = charge_point_of(station)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    batch = [
        envelope(
            SessionStarted(
                session_id=sid,
                charge_point_id=cp,
                connector_id=1,
                transaction_id=f"t{n}",
                meter_start_wh=0,
                started_at=start,
            ),
            sid,
        )
        for n, sid in enumerate(sids)
    ] + [
        envelope(
            MeterReading(
                session_id=sid,
                charge_point_id=cp,
                transaction_id=f"t{n}",
                energy_wh=1_000 * (n + 1),
                measured_at=start + timedelta(minutes=10),
            ),
            sid,
        )
        for n, sid in enumerate(sids)
    ]
    projection = SessionProjection(env.wallet_db)

    def views() -> list[tuple[str, int, int, int]]:
        with env.wallet_db.session() as session:
            rows = [session.get(ChargingSession, sid) for sid in sids]
            return [(r.state, r.energy_wh, r.cost_so_far, r.version) for r in rows if r is not None]

    projection.batch(batch)
    applied = views()
    assert [(state, energy) for state, energy, _, _ in applied] == [
        ("charging", 1_000),
        ("charging", 2_000),
    ]
    (_, _, one_kwh, _), (_, _, two_kwh, _) = applied
    assert 0 < one_kwh < two_kwh
    projection.batch(batch)
    assert views() == applied


def test_a_replica_that_missed_a_sample_prices_from_all_the_stored_points(env: World) -> None:
    """Each meter value is booked on the process's running price; a process that has not seen
    every stored point (another replica's) builds the price from all of them instead."""
    session = requested(env, "replicas")
    sid, meter = session.sid, session.meter
    one, other = SessionProjection(env.wallet_db), SessionProjection(env.wallet_db)

    def cost() -> int:
        return env.session_row(sid).cost_so_far

    one.batch([session.started(), meter(10, 1_000)])
    one.batch([meter(20, 2_000)])  # booked on its running price
    assert one.prices.get(sid, covering=3) is not None  # start, 10 and 20 minutes
    assert cost() == 1_550_000  # (0.50 + 2 kWh x 0.40) x 1.19 = 1.547
    other.batch([meter(40, 5_000)])  # the first one never sees this
    # Booked on its own running price, this would cost 3 kWh; the points say 5.
    one.batch([meter(30, 3_000)])
    assert cost() == 2_980_000  # (0.50 + 5 kWh x 0.40) x 1.19 = 2.975


def test_the_escrows_price_stands_against_a_late_meter_value(env: World) -> None:
    """Once the escrow priced the session, that is its cost: a meter value published late (the
    sample is still stored) does not put the meter's running price back over it."""
    session = requested(env, "late-meter")
    sid, meter = session.sid, session.meter
    priced = SessionPriced(session_id=sid, amount=1_234_000, cdr_hash="0x" + "22" * 32, cdr={})
    projection = SessionProjection(env.wallet_db)
    projection.batch([session.started(), meter(10, 1_000), envelope(priced, sid)])
    assert (env.session_row(sid).state, env.session_row(sid).cost_so_far) == ("priced", 1_234_000)

    projection.batch([meter(20, 2_000)])
    row = env.session_row(sid)
    assert (row.state, row.energy_wh, row.cost_so_far) == ("priced", 2_000, 1_234_000)
    with env.wallet_db.session() as db_session:
        points = db_session.scalar(sa.select(sa.func.count()).where(MeterPoint.session_id == sid))
    assert points == 3
