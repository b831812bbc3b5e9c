"""The flows in a real browser: Playwright driving Debian's Chromium
(``/usr/bin/chromium``, never a downloaded browser) against a live server.

Sign up, buy coins (the Stripe stand-in's checkout), fund a street light and
see it switch on; a producer withdraws to the bank; an operator forces a
disconnect in the admin. Screenshots of the main pages go to
``artifacts/screenshots/`` (CI keeps them); the dashboard, grid and operator
pages are copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse

from meters.funding import meter_fund
from meters.models import Meter, MeterDecision
from meters.supply import meters_decide
from meters.tests.factories import HOUR, T0, meter_make, reading_make, user_make
from settlement.services import settlement_close
from utility.ledger.models import Account
from utility.payments.models import Withdrawal

from .conftest import NOW, PASSWORD, town_build

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is required: apt-get install -y chromium (.ci/run does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own
    # ORM calls (setup, checks) are synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def site(live_server, web_settings):
    web_settings.SITE_URL = live_server.url  # the stand-in's checkout sends the browser back here
    return live_server.url


def new_page(browser, width: int = 1100, height: int = 800):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on(
        "response",
        lambda response: errors.append(f"{response.status} {response.url}") if response.status == 404 else None,
    )
    return page, errors


def shot(page, name: str, docs: bool = False, full_page: bool = False) -> None:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")


def log_in(page, site: str, username: str, password: str = PASSWORD) -> None:
    page.goto(site + reverse("web:login"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/dashboard/$"))


def test_sign_up_buy_coins_fund_a_street_light_and_see_it_switch_on(browser, site):
    town = town_build(with_passwords=True)
    meters_decide([town.light.pk], NOW)
    assert Meter.objects.get(pk=town.light.pk).supply_state == "disconnect"
    page, errors = new_page(browser, width=390, height=844)  # a phone

    page.goto(site + reverse("web:signup"))
    page.fill("#id_username", "newbie")
    page.fill("#id_email", "newbie@example.org")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    shot(page, "signup-phone")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/dashboard/$"))
    assert page.inner_text("[data-testid=wallet]").startswith("0.000000")

    # Buy 10.00 of coins on the stand-in's checkout page.
    page.click("main a:has-text('Buy coins')")
    page.wait_for_url(re.compile(r".*/payments/buy/$"))
    page.fill("input[name=amount]", "10.00")
    page.click("text=See how many coins")
    page.click("text=Pay 10.00")
    page.wait_for_url(re.compile(r".*/payments/fake/checkout/.*"))
    shot(page, "checkout-phone")
    page.click("button[value=pay]")
    page.wait_for_url(re.compile(r".*/payments/topups/.*"))
    assert Account.objects.get(owner__username="newbie", kind="wallet").balance_uk == 10_000_000

    # Find the street light by its label, fund it, confirm.
    page.goto(site + reverse("web:fund"))
    page.fill("#id_q", "elm")
    page.wait_for_selector("#fund-results >> text=SL-1")
    page.click("#fund-results >> text=Pick")
    page.fill("#id_amount", "5")
    page.click("text=Continue")
    assert "Move 5.000000 k" in page.inner_text(".confirm")
    shot(page, "fund-confirm-phone")
    page.click("text=Yes, fund it")
    page.wait_for_url(re.compile(r".*/meters/SL-1/\?funded=1$"))
    state = page.locator("#card-SL-1 [data-testid=state]")
    state.wait_for()
    page.wait_for_function("document.querySelector('#card-SL-1').dataset.state === 'connected'")
    assert state.inner_text() == "connected"
    assert "4.550000" in page.inner_text("#card-SL-1 [data-testid=balance]")
    shot(page, "street-light-funded-phone")
    assert Meter.objects.get(pk=town.light.pk).supply_state == "connect"
    assert not errors, errors


def test_a_producer_withdraws_to_the_bank(browser, site):
    town_build(with_passwords=True)
    page, errors = new_page(browser)
    log_in(page, site, "alice")
    page.click("nav >> text=Coins")
    page.click("text=Connect my bank account")
    page.wait_for_url(re.compile(r".*/payments/fake/onboarding/.*"))
    page.click("main button")
    page.wait_for_url(re.compile(r".*/payments/$"))
    assert "Connected" in page.inner_text("main")
    page.click("text=Withdraw to my bank")
    page.fill("input[name=coins]", "12.5")
    page.click("text=See the payout")
    page.click("text=Withdraw 12.5")
    page.wait_for_url(re.compile(r".*/payments/withdrawals/.*"))
    shot(page, "withdrawal")
    withdrawal = Withdrawal.objects.get(user__username="alice")
    assert withdrawal.amount_uk == 12_500_000 and withdrawal.amount_cents == 1250
    assert Account.objects.get(owner__username="alice", kind="wallet").balance_uk == 37_500_000
    assert not errors, errors


def test_an_operator_forces_a_disconnect_in_the_admin(browser, site):
    town = town_build(with_passwords=True)
    page, errors = new_page(browser)
    page.goto(site + "/admin/")
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto(site + reverse("admin:meters_meter_changelist"))
    page.check(f"input[name=_selected_action][value='{town.b_home.pk}']")
    page.select_option("select[name=action]", "force_disconnect")
    page.click("button[name=index]")
    page.fill("#id_reason", "meter tampering reported")
    shot(page, "admin-force-disconnect")
    page.click("input[value=Confirm]")
    page.wait_for_selector("text=1 meter(s) told to disconnect; recorded.")
    decision = MeterDecision.objects.get(meter=town.b_home)
    assert (decision.state, decision.issued_by) == ("disconnect", "op")
    assert Meter.objects.get(pk=town.b_home.pk).supply_state == "disconnect"
    assert not errors, errors


# Share of the peak, by hour of the day (UTC), in per cent.
SUN = [0, 0, 0, 0, 0, 0, 5, 15, 35, 55, 75, 90, 100, 95, 85, 65, 45, 25, 8, 0, 0, 0, 0, 0]
HOME = [30, 25, 22, 20, 22, 30, 55, 80, 60, 45, 40, 42, 45, 40, 38, 45, 60, 85, 100, 95, 80, 65, 50, 38]
LIGHT = [100, 100, 100, 100, 100, 100, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 100, 100, 100, 100, 100]


def two_days(town) -> None:
    """More of the town (six homes, a school roof) and a day and a half of
    readings, all settled: enough for the screenshots to show a day's curve."""
    school = meter_make(town.grid, "P-2", "producer", label="School roof")
    homes = [meter_make(town.grid, f"H-{i}", "consumer", label=f"House {i}") for i in range(1, 7)]
    for hour in range(3, 37):  # to the second day's noon
        start = T0 + hour * HOUR
        h, cloud = start.hour, 100 - (hour * 37 % 30)
        reading_make(town.a_home, start, import_wh=12 * HOME[h])
        reading_make(town.b_home, start, import_wh=9 * HOME[h])
        reading_make(town.light, start, import_wh=150 * LIGHT[h] // 100)
        reading_make(town.a_roof, start, export_wh=60 * SUN[h] * cloud // 100)
        reading_make(school, start, export_wh=90 * SUN[h] * cloud // 100)
        for index, home in enumerate(homes):
            reading_make(home, start, import_wh=(6 + index) * HOME[(h + index) % 24])
        settlement_close(town.grid.pk, start, start + HOUR + timedelta(minutes=15))


def test_screenshots_of_the_main_pages(browser, site, web_settings):
    from utility import clock

    town = town_build(with_passwords=True)
    two_days(town)
    late = T0 + 37 * HOUR + timedelta(minutes=20)
    clock.clock_install(lambda: late)
    meter_fund(town.alice, town.a_home, 45_000_000, "screenshot")
    meters_decide(list(Meter.objects.values_list("pk", flat=True)), late)
    user_make("reader", password=PASSWORD)
    page, errors = new_page(browser)
    log_in(page, site, "alice")
    page.wait_for_function("window.Chart !== undefined")
    shot(page, "dashboard", docs=True)
    page.goto(site + reverse("web:meter", args=["A-HOME"]))
    page.wait_for_function(
        "!document.querySelector('[data-testid=chain]').textContent.includes('Asking')", timeout=60_000
    )
    shot(page, "meter", full_page=True)
    page.goto(site + reverse("web:grid", args=["town"]))
    page.wait_for_function("window.Chart !== undefined")
    assert page.locator(".tile").count() == 11
    shot(page, "grid", docs=True)
    page.goto(site + reverse("web:fund"))
    shot(page, "fund")
    operator, operator_errors = new_page(browser)
    log_in(operator, site, "op")
    operator.goto(site + reverse("web:operator"))
    operator.wait_for_selector("[data-testid=mirror-lag]", timeout=60_000)
    shot(operator, "operator", docs=True)
    phone, phone_errors = new_page(browser, width=390, height=844)
    log_in(phone, site, "alice")
    shot(phone, "dashboard-phone")
    phone.goto(site + reverse("web:grid", args=["town"]))
    shot(phone, "grid-phone")
    # At phone width nothing is wider than the screen but the tables' own scrollers.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.goto(site + "/api/docs/")
    phone.wait_for_selector(".swagger-ui .info", timeout=60_000)  # the API docs load from local assets
    assert not (errors or operator_errors or phone_errors), errors + operator_errors + phone_errors
