"""The resident and operator pages, through Django's test client."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from meters.models import MeterDecision
from meters.supply import meters_decide
from settlement.models import SettlementLine
from settlement.reports import fee_share_uk
from utility.audit.models import OperatorAction

from .conftest import NOW

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_log_in(client, town):
    for name, args in [("web:dashboard", []), ("web:meter", ["A-HOME"]), ("web:fund", []), ("web:grid_default", [])]:
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302
        assert response.url.startswith(reverse("web:login"))


def test_landing_for_visitors_and_dashboard_for_residents(client, town):
    assert "Sign up" in client.get("/").content.decode()
    client.force_login(town.alice)
    assert client.get("/").url == reverse("web:dashboard")


def test_dashboard_shows_wallet_meters_states_and_chart(client, town):
    meters_decide([town.a_home.pk], NOW)  # -3.3 k, no credit: cut off
    client.force_login(town.alice)
    page = client.get(reverse("web:dashboard")).content.decode()
    assert "50.000000" in page  # wallet
    assert 'id="card-A-HOME" data-state="disconnected"' in page
    assert 'id="card-A-ROOF" data-state="connected"' in page
    assert "B-HOME" not in page
    assert 'id="chart-week"' in page


def test_low_state_when_the_balance_lasts_less_than_a_day(client, town):
    from meters.funding import meter_fund

    meter_fund(town.alice, town.a_home, 3_300_000 + 5_000_000, "low-test")  # about 5 h of use
    client.force_login(town.alice)
    page = client.get(reverse("web:dashboard")).content.decode()
    assert 'id="card-A-HOME" data-state="low"' in page


def test_meter_page_lists_intervals_with_fee_share_and_loss(client, town):
    client.force_login(town.alice)
    response = client.get(reverse("web:meter", args=["A-HOME"]))
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [row.interval_start.hour for row in rows] == [2, 1, 0]
    line = SettlementLine.objects.select_related("run").get(
        meter=town.a_home, run__interval_start=rows[0].interval_start
    )
    run = line.run
    expected = fee_share_uk(
        debit_uk=line.debit_uk, export_wh=0, fee_uk=run.fee_uk, pool_uk=run.pool_uk, run_export_wh=run.export_wh
    )
    assert rows[0].line.fee_share_uk == expected > 0
    assert rows[0].line.debit_uk == 1_200_000  # 1.2 kWh at 1 k/kWh
    assert rows[0].line.loss_wh == run.loss_wh == 3000 - 1200 - 2000 - 150
    page = response.content.decode()
    assert "1.200000" in page and "Fee share" in page


def test_producer_fee_share_is_what_the_fee_cut_from_earnings(town):
    line = SettlementLine.objects.select_related("run").filter(meter=town.a_roof).first()
    assert line.credit_uk + line.run.fee_uk == line.run.pool_uk  # the only producer
    share = fee_share_uk(
        debit_uk=0,
        export_wh=line.export_wh,
        fee_uk=line.run.fee_uk,
        pool_uk=line.run.pool_uk,
        run_export_wh=line.run.export_wh,
    )
    assert share == line.run.fee_uk


def test_meter_page_of_someone_else(client, town):
    client.force_login(town.bob)
    private = client.get(reverse("web:meter", args=["A-HOME"]))
    assert private.status_code == 200
    page = private.content.decode()
    assert "private meter" in page and "Alice" not in page and "-3." not in page
    public = client.get(reverse("web:meter", args=["SL-1"])).content.decode()
    assert "Street light, Elm St" in public and "-0.450000" in public
    assert client.get(reverse("web:meter", args=["NOPE"])).status_code == 404
    assert client.get(reverse("web:meter_csv", args=["A-HOME"])).status_code == 404
    assert client.get(reverse("web:meter_chain", args=["A-HOME"])).status_code == 404


def test_csv_export_has_every_interval(client, town):
    client.force_login(town.alice)
    response = client.get(reverse("web:meter_csv", args=["A-HOME"]))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["interval_start_utc"] for r in rows] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
    ]
    assert [int(r["paid_uk"]) for r in rows] == [1_000_000, 1_100_000, 1_200_000]
    assert rows[0]["reported_import_wh"] == "1000" and int(rows[0]["fee_share_uk"]) > 0


def test_meter_page_paginates_a_long_history(client, town):
    from meters.tests.factories import HOUR, T0, reading_make

    for hour in range(3, 60):
        reading_make(town.a_home, T0 + hour * HOUR, import_wh=10)
    client.force_login(town.alice)
    first = client.get(reverse("web:meter", args=["A-HOME"]))
    second = client.get(reverse("web:meter", args=["A-HOME"]) + "?page=2")
    third = client.get(reverse("web:meter", args=["A-HOME"]) + "?page=3")
    assert len(first.context["rows"]) == 24 and first.context["page"]["older"] == 2
    assert len(second.context["rows"]) == 24 and second.context["page"]["newer"] == 1
    assert [r.interval_start.hour for r in third.context["rows"]][-3:] == [2, 1, 0]
    assert third.context["rows"][-1].line is not None and third.context["page"]["older"] is None
    assert client.get(reverse("web:meter", args=["A-HOME"]) + "?page=abc").status_code == 200


def test_grid_page_draws_every_meter_and_hides_others_balances(client, town):
    client.force_login(town.bob)
    response = client.get(reverse("web:grid", args=["town"]))
    tiles = {tile.public_id: tile for tile in response.context["tiles"]}
    assert set(tiles) == {"A-HOME", "A-ROOF", "B-HOME", "SL-1"}
    assert tiles["A-ROOF"].icon == "solar" and tiles["SL-1"].icon == "light" and tiles["B-HOME"].icon == "house"
    assert tiles["A-HOME"].balance_uk is None and tiles["A-HOME"].state is None
    assert tiles["B-HOME"].balance_uk is not None and tiles["SL-1"].balance_uk is not None
    assert tiles["A-HOME"].import_wh == 1200  # the latest interval's reading
    assert response.context["totals"] == {"import_wh": 3350, "export_wh": 3000, "loss_wh": -350}
    page = response.content.decode()
    assert "<svg" in page and 'hx-trigger="every 5s"' in page
    assert "One interval ahead" not in page  # no demo clock here
    live = client.get(reverse("web:grid_live", args=["town"]))
    assert live.status_code == 200 and 'id="grid-live"' in live.content.decode()
    assert client.post(reverse("web:grid_advance", args=["town"])).status_code == 404
    assert client.get(reverse("web:grid", args=["nope"])).status_code == 404


def test_demo_clock_button_moves_time_one_interval(client, town):
    from demo.clock import demo_clock_start, demo_clock_stop

    demo = demo_clock_start(start=NOW, speed=0)
    try:
        client.force_login(town.bob)
        assert "One interval ahead" in client.get(reverse("web:grid", args=["town"])).content.decode()
        response = client.post(reverse("web:grid_advance", args=["town"]), HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert (demo.now() - NOW).total_seconds() == 3600  # one interval ahead
        assert OperatorAction.objects.filter(action="demo_clock_advance", actor="bob").exists()
    finally:
        demo_clock_stop()


def test_operator_page_is_for_staff_only(client, town):
    client.force_login(town.alice)
    assert client.get(reverse("web:operator")).status_code == 302
    assert client.post(reverse("web:operator_act", args=["settle"]), {"grid": "town"}).status_code == 302
    assert not OperatorAction.objects.filter(action="settlement_catch_up").exists()


def test_operator_page_shows_health_and_acts(client, town):
    from meters.models import RejectedReading

    RejectedReading.objects.create(topic="t", reason="bad_signature", payload="{}", received_at=NOW)
    client.force_login(town.operator)
    response = client.get(reverse("web:operator"))
    assert response.status_code == 200
    assert response.context["ingest"].rejected_by_reason == [("bad_signature", 1)]
    assert response.context["alerts"]  # every town interval imports more than it exports
    running_out = dict((grid.slug, f) for grid, f in response.context["running_out"])
    assert {f.public_id for f in running_out["town"]} >= {"A-HOME", "B-HOME", "SL-1"}
    assert client.get(reverse("web:operator_mirror")).status_code == 200
    client.post(reverse("web:operator_act", args=["settle"]), {"grid": "town"})
    client.post(reverse("web:operator_act", args=["reconcile"]))
    actions = set(OperatorAction.objects.filter(actor="op").values_list("action", flat=True))
    assert {"settlement_catch_up", "payments_catch_up"} <= actions
    assert client.post(reverse("web:operator_act", args=["nope"])).status_code == 404
    bad = client.post(reverse("web:operator_act", args=["settle"]), {"grid": "nope"}, follow=True)
    assert "Pick a grid" in bad.content.decode()


def test_state_partial_polls_after_funding(client, town):
    client.force_login(town.bob)
    assert client.get(reverse("web:meter_state", args=["SL-1"])).status_code == 200
    assert client.get(reverse("web:meter_state", args=["A-HOME"])).status_code == 404


def test_payments_pages_use_the_site_layout(client, town):
    client.force_login(town.alice)
    page = client.get(reverse("payments:home")).content.decode()
    assert 'class="topbar"' in page and "Fund a meter" in page


def test_no_decision_is_made_by_looking(client, town):
    client.force_login(town.alice)
    before = MeterDecision.objects.count()
    for name, args in [("web:dashboard", []), ("web:meter", ["A-HOME"]), ("web:grid_default", [])]:
        client.get(reverse(name, args=args))
    assert MeterDecision.objects.count() == before


def test_the_cached_chart_follows_new_settlements(client, town):
    from datetime import timedelta

    from meters.tests.factories import HOUR, T0, reading_make
    from settlement.services import settlement_close
    from utility import clock

    client.force_login(town.alice)
    before = client.get(reverse("web:dashboard")).context["chart"]
    assert sum(before["paid_uk"]) == 3_300_000
    reading_make(town.a_home, T0 + 3 * HOUR, import_wh=500)
    later = T0 + 4 * HOUR + timedelta(minutes=30)
    settlement_close(town.grid.pk, T0 + 3 * HOUR, later)
    clock.clock_install(lambda: later)
    after = client.get(reverse("web:dashboard")).context["chart"]
    assert sum(after["paid_uk"]) == 3_800_000 and sum(after["import_wh"]) == 3_800
