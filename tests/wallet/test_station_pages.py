"""The driver pages and a station id holding URL delimiters ('/', '#', '?', '%', all legal in
one): the links carry it as one encoded path segment and the station page shows that station,
over real HTTP as in production (the server decodes %2F before routing)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from markupsafe import escape

from chargenet.wallet.models import ChargingSession, TopUp
from tests.registry.harness import free_port, served
from tests.wallet.harness import EUR, World, world


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    """The wallet harness's world, its pages reaching the registry over HTTP; and their URL."""
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        # Read by the wallet's create_app, before the registry is there to be served.
        patch.setenv("CHARGENET_WEB_REGISTRY_URL", f"http://127.0.0.1:{port}")
        with (
            world(tmp_path_factory.mktemp("pages")) as env,
            served(env.registry.app, port),
            served(env.wallet.app, closing=env.wallet.app.state.driver_app.config.aclose) as wallet,
        ):
            yield env, wallet


def test_the_station_page_and_the_links_to_it_take_an_id_with_url_delimiters(
    pages: tuple[World, str],
) -> None:
    env, url = pages
    base = f"FR*ABC*S{secrets.token_hex(4).upper()}"
    cut_off = env.station(station_id=base)  # what the page read when the id was split at '/'
    odd = env.station(station_id=base + "/1#2?%41")
    env.charge_point_online(odd)
    driver = env.driver()
    page_path = f"/app/stations/{quote(odd, safe='')}"
    with httpx.Client(base_url=url) as browser:
        # Signed out: to the sign-in page, and from there back to this station's page.
        answer = browser.get(page_path)
        assert answer.status_code == 303, answer.text
        [back_to] = parse_qs(urlsplit(answer.headers["location"]).query)["next"]
        assert back_to == page_path
        form = {"email": driver.email, "password": "correct horse battery", "next": back_to}
        signed = browser.post("/app/signin", data=form)
        assert (signed.status_code, signed.headers["location"]) == (303, page_path)

        page = browser.get(page_path)
        assert page.status_code == 200, page.text
        assert f'name="station_id" value="{escape(odd)}"' in page.text
        assert f'value="{escape(cut_off)}"' not in page.text

        listed = browser.get("/app/stations").text
        assert listed.count(f'href="{page_path}"') == 2  # the map's marker and the list's entry


def test_a_station_page_path_with_the_id_unencoded_is_refused_with_a_reason(
    pages: tuple[World, str],
) -> None:
    _env, url = pages
    with httpx.Client(base_url=url) as browser:
        answer = browser.get("/app/stations/FR*ABC/1%232")
        assert answer.status_code == 404
        assert "a station id is one path segment" in answer.text


def _csrf(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _rows(env: World, table: type[TopUp] | type[ChargingSession], driver_id: str) -> int:
    with env.wallet_db.session() as session:
        where = table.driver_id == driver_id
        return int(session.scalar(sa.select(sa.func.count()).select_from(table).where(where)) or 0)


@pytest.mark.parametrize("typed", ["\uff11\uff12", "\u0661\u0662", "1\u0660", "\u0665,50"])
def test_a_number_on_the_pages_of_other_than_ascii_digits_is_refused(
    pages: tuple[World, str], typed: str
) -> None:
    """float() and Decimal() read any script's digits: a full-width or Arabic-Indic amount was
    topped up or locked for a session as typed, and a search went out for such a place."""
    env, url = pages
    station = env.station()
    env.charge_point_online(station)
    driver = env.driver()
    assert env.top_up(driver, 20 * EUR).status_code == 201
    topups = _rows(env, TopUp, driver.driver_id)
    with httpx.Client(base_url=url) as browser:
        form = {"email": driver.email, "password": "correct horse battery"}
        assert browser.post("/app/signin", data=form).status_code == 303

        form = {"amount": typed, "payment_reference": f"page-{secrets.token_hex(8)}"}
        form["csrf"] = _csrf(browser.get("/app/").text)
        answer = browser.post("/app/topup", data=form)
        assert answer.status_code == 422 and "is not a number" in answer.text, answer.text
        assert _rows(env, TopUp, driver.driver_id) == topups

        page = browser.get(f"/app/stations/{quote(station, safe='')}").text
        form = {
            "station_id": station,
            "connector": "E1/1",
            "max_amount": typed,
            "idempotency_key": secrets.token_hex(16),
            "csrf": _csrf(page),
        }
        answer = browser.post("/app/sessions", data=form)
        assert answer.status_code == 422 and "is not a number" in answer.text, answer.text
        assert _rows(env, ChargingSession, driver.driver_id) == 0

        for query in (
            {"radius_km": typed, "lat": "52.5", "lon": "13.4"},
            {"lat": typed, "lon": "13.4"},
            {"lat": "52.5", "lon": typed},
        ):
            search = browser.get("/app/stations", params=query)
            assert "is not a number" in search.text, (query, search.text)
