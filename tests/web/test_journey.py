"""Issue 11's must-show, in headless Chromium against every service running for real:

the CPO registers a station in the console (on chain through the registry's CPO API) and its
simulated OCPP charge point comes online; a driver signs in, tops up, finds the station on the
map, reads the tariff (kWh, minute, session fee), starts a session with a maximum, watches the
live cost rise, stops, and downloads the invoice from the history, which shows the CDR, the
settlement transaction and the verified signed meter data; the console then shows the session
running while it ran and its revenue once settled. Every page is saved at phone and desktop width
under tests/web/artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from chargenet.cli.network.client import station_for
from chargenet.cli.network.fleet import ChargingProfile, SimStation, meter_for
from chargenet.cli.network.plan import demo_cpos
from chargenet.core.auth import Role, issue_token
from chargenet.core.web.station_paths import path_segment
from tests.web.harness import Network, browser, chromium_missing, network, snap

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
CPOS = demo_cpos(stations=1, spare=1)
CPO = CPOS[0]  # Amperio, OCPP 1.6J, 22 kW AC
API_CP, CONSOLE_CP = CPO.charge_points  # one registered through the API, one in the console
PASSWORD = "correct horse battery staple"


def amount(text: str) -> int:
    """``12.34 EUR`` -> 1234 (cents), to compare what pages show."""
    match = re.search(r"([\d,]+)\.(\d{2}) EUR", text)
    assert match, f"no EUR amount in {text!r}"
    return int(match.group(1).replace(",", "")) * 100 + int(match.group(2))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with network(tmp_path_factory.mktemp("web"), CPOS) as running:
        seed = running.network.meter_seed
        running.loop.run(running.client.register_station(CPO, API_CP, 0, seed))
        yield running


@pytest.fixture(scope="module")
def context() -> Iterator[BrowserContext]:
    with browser() as opened:
        yield opened


def charge_point(world: Network, cp_id: str) -> SimStation:
    station = station_for(
        CPO,
        cp_id,
        world.endpoints.gateways[CPO.cpo_id][0],
        world.network.meter_seed,
        profile=ChargingProfile(power_w=CPO.power_w, tick_seconds=0.5, speedup=60.0),
    )
    world.loop.run(station.connect())
    return station


def styled(page: Page) -> int:
    """How many stylesheets the page loaded, failing if one of them is missing or empty."""
    rules: list[int] = page.evaluate(
        "() => [...document.styleSheets].map(sheet => sheet.cssRules.length)"
    )
    assert rules and all(rules), f"a stylesheet did not load: rules per sheet {rules}"
    return len(rules)


def reload_until(page: Page, selector: str, timeout: float = 60.0) -> None:
    """Reload until ``selector`` shows: for changes that arrive from the chain or the bus."""
    deadline = time.monotonic() + timeout
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} did not appear on {page.url}"
        time.sleep(0.5)
        page.reload()


def test_console_registration_driver_journey_and_revenue(
    world: Network, context: BrowserContext
) -> None:
    shots: list[Path] = []
    console = context.new_page()
    driver = context.new_page()

    # -- the CPO signs in and registers a station on chain ---------------------------------------
    console.goto(f"{world.registry}/console/")
    expect(console).to_have_url(re.compile(r"/console/signin$"))
    assert styled(console) == 2  # the shared base and the console's own
    shots += snap(console, "console-signin")
    console.get_by_label("Your CPO access token").fill(
        issue_token(CPO.cpo_id, Role.CPO, world.network.jwt_secret)
    )
    console.get_by_role("button", name="Sign in").click()
    expect(console.get_by_role("heading", name="Your stations")).to_be_visible()
    console.get_by_role("link", name="Register a station").click()
    station_id = CPO.station_id(CONSOLE_CP)
    form = {
        "Station id": station_id,
        "Name": "Amperio Alexanderplatz",
        "Street": "Alexanderplatz 1",
        "City": "Berlin",
        "Latitude": "52.521918",
        "Longitude": "13.413215",
        "OCPP charge point id": CONSOLE_CP,
        "Connectors": "1",
        "Power per connector (kW)": "22",
        "Meter key hash": meter_for(world.network.meter_seed, CONSOLE_CP).key_hash,
        "Price per kWh (EUR)": "0.39",
        "Price per minute (EUR)": "0.02",
        "Session fee (EUR)": "0.50",
        "VAT (%)": "19",
    }
    for label, value in form.items():
        console.get_by_label(label, exact=True).fill(value)
    shots += snap(console, "console-register")
    console.get_by_role("button", name="Register on chain").click()
    expect(console.get_by_role("status")).to_contain_text("Sent on chain")
    reload_until(console, f'tr[data-station="{station_id}"]')

    # Its charge point connects over OCPP and reports the connector free.
    cps = [charge_point(world, API_CP), charge_point(world, CONSOLE_CP)]
    try:
        reload_until(
            console, f'tr[data-station="{station_id}"] [data-connector="E1/1"]:text("Available")'
        )
        shots += snap(console, "console-stations")
        _driver_journey(world, driver, console, station_id, shots)
    finally:
        for cp in cps:
            world.loop.run(cp.close())
    print("screenshots:", *(str(p.relative_to(p.parents[2])) for p in shots), sep="\n  ")


def _driver_journey(
    world: Network, page: Page, console: Page, station_id: str, shots: list[Path]
) -> None:
    # -- sign up, sign out, sign in ---------------------------------------------------------------
    email = f"driver-{int(time.time() * 1000)}@example.org"
    page.goto(f"{world.wallet}/")
    expect(page).to_have_url(re.compile(r"/app/signin"))
    assert styled(page) >= 2  # the shared base and the app's own (Leaflet's too, with tiles)
    shots += snap(page, "driver-signin")
    page.get_by_text("New here? Create an account").click()
    page.locator("#new-email").fill(email)
    page.locator("#new-password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("E-mail address").first.fill(email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your wallet")).to_be_visible()

    # -- top up with the test payment provider ----------------------------------------------------
    page.get_by_label("Amount (EUR)").fill("50")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_role("status")).to_contain_text("Top-up received")
    reload_until(page, '#available:text("50.00 EUR")')
    shots += snap(page, "driver-wallet")

    # -- find the station on the map with the filters ---------------------------------------------
    page.get_by_role("link", name="Stations").click()
    page.get_by_label("Available now").check()
    page.get_by_label("Connector").select_option(label="Type 2")
    page.get_by_label("Power").select_option(label="22 kW or more")
    page.get_by_role("button", name="Show stations").click()
    expect(page.locator("#count")).to_contain_text("2 stations found")
    marker = page.locator(f'svg a.marker[data-station="{station_id}"]')
    expect(marker).to_have_attribute("aria-label", re.compile("Amperio Alexanderplatz: available"))
    shots += snap(page, "driver-stations")
    page.get_by_label("Connector").select_option(label="CHAdeMO")
    page.get_by_role("button", name="Show stations").click()
    expect(page.locator("#count")).to_contain_text("0 stations found")
    page.go_back()
    page.locator(f'svg a.marker[data-station="{station_id}"]').click()

    # -- the tariff before starting: kWh, minute, session fee (AFIR) ------------------------------
    expect(page.get_by_role("heading", name="Amperio Alexanderplatz")).to_be_visible()
    rows = page.locator("table.tariff tbody th").all_inner_texts()
    assert rows == ["Energy", "Charging time", "Session fee"], rows
    prices = page.locator("table.tariff tbody td:nth-child(2)").all_inner_texts()
    # 0.39 + 19% = 0.4641 per kWh; 0.02 + 19% = 0.0238 per minute; 0.50 + 19% = 0.595
    assert prices == ["0.4641 EUR per kWh", "0.0238 EUR per minute", "0.595 EUR per session"]
    shots += snap(page, "driver-station")

    # -- start with a maximum; the live cost rises -------------------------------------------------
    page.get_by_label("Most this session may cost (EUR)").fill("15")
    page.get_by_role("button", name="Start charging").click()
    expect(page).to_have_url(re.compile(r"/app/sessions/[0-9a-f-]+$"))
    session_id = page.url.rsplit("/", 1)[1]
    expect(page.locator('[data-field="state"]')).to_have_text("charging", timeout=60_000)
    cost = page.locator('[data-field="cost"]')
    expect(cost).not_to_have_text("0.00 EUR", timeout=30_000)
    first = amount(cost.inner_text())
    page.wait_for_function(
        """([selector, before]) => {
            const m = document.querySelector(selector).textContent.match(/([\\d,]+)\\.(\\d{2})/);
            return m && Number(m[1].replace(/,/g, '')) * 100 + Number(m[2]) > before;
        }""",
        arg=['[data-field="cost"]', first],
        timeout=30_000,
    )
    later = amount(cost.inner_text())
    remaining = amount(page.locator('[data-field="remaining"]').inner_text())
    assert later > first and remaining == 1500 - later, (first, later, remaining)
    print(f"live cost rose from {first / 100:.2f} to {later / 100:.2f} EUR")
    shots += snap(page, "driver-live")

    # The console shows it running: an escrow session open on chain at the station.
    console.goto(f"{world.registry}/console/")
    expect(console.get_by_role("heading", name="Sessions running now")).to_be_visible()
    reload_until(console, f'table.data td:text("{station_id}")')
    shots += snap(console, "console-running")

    # -- stop; the session settles -----------------------------------------------------------------
    page.get_by_role("button", name="Stop charging").click()
    expect(page.locator('[data-field="state"]')).to_have_text("settled", timeout=90_000)
    paid = amount(page.locator('[data-field="settled"]').inner_text())
    refunded = amount(page.locator('[data-field="refunded"]').inner_text())
    assert paid >= later and paid + refunded == 1500, (paid, refunded)
    shots += snap(page, "driver-settled")

    # -- history: CDR, settlement transaction, signed meter data, invoice --------------------------
    page.get_by_role("link", name="History").click()
    card = f'li[data-session="{session_id}"]'
    reload_until(page, f"{card} a:text('Download invoice')")
    entry = page.locator(card)
    expect(entry).to_contain_text("Settlement transaction")
    expect(entry.locator("code").nth(1)).to_have_text(re.compile(r"^0x[0-9a-f]{64}$"))
    expect(entry).to_contain_text("Signed meter data verified")
    entry.get_by_text("Signed meter data (").click()
    expect(entry.locator("pre").first).to_contain_text("OCMF|")
    shots += snap(page, "driver-history")
    with page.expect_download() as download:
        entry.get_by_role("link", name=re.compile("Download invoice")).click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    print(
        f"invoice {download.value.suggested_filename}: {len(pdf)} bytes, paid {paid / 100:.2f} EUR"
    )

    # -- the console: the session's revenue and invoice --------------------------------------------
    console.goto(f"{world.registry}/console/revenue")
    expect(console.locator(f'tr[data-session="{session_id}"]')).to_be_visible()
    assert amount(console.locator("#revenue-total").inner_text()) == paid
    today = console.locator("rect.bar").last
    assert int(today.get_attribute("data-units") or 0) == paid * 10_000
    shots += snap(console, "console-revenue")

    # -- the CPO updates the tariff; the update goes on chain and the driver sees it ---------------
    console.goto(f"{world.registry}/console/")
    console.locator(f'tr[data-station="{station_id}"]').get_by_role("link", name="Update").click()
    expect(console.get_by_label("Session fee (EUR)")).to_have_value("0.50")
    console.get_by_label("Session fee (EUR)").fill("0.60")
    shots += snap(console, "console-update")
    console.get_by_role("button", name="Send update on chain").click()
    expect(console.get_by_role("status")).to_contain_text("Sent on chain")
    page.goto(f"{world.wallet}/app/stations/{path_segment(station_id)}")
    reload_until(page, 'table.tariff td:text("0.714 EUR per session")')
