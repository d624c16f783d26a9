"""The driver pages and a station id holding URL delimiters ('/', '#', '?', '%', all legal in
one): the links carry it as one encoded path segment and the station page shows that station,
over real HTTP as in production (the server decodes %2F before routing)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from markupsafe import escape

from tests.registry.harness import free_port, served
from tests.wallet.harness import World, world


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
