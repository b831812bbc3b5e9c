"""The operator page (staff): grid health at a glance, with links to act."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from contracts.selectors import mirror_status
from meters.metrics import ingest_stats
from meters.reports import grid_for_slug, grids_list, ingest_health
from meters.supply import meters_running_out
from settlement.reports import runs_stuck, runs_with_alerts
from utility import clock
from utility.payments.selectors import withdrawals_stuck

from ..services import mirror_catch_up, payments_catch_up, settlement_catch_up

ALERT_WINDOW = timedelta(days=2)


@staff_member_required
def operator_page(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    grids = list(grids_list())
    context = {
        "now": now,
        "ingest": ingest_health(now),
        "ingest_totals": ingest_stats(now),
        "alerts": list(runs_with_alerts(now - ALERT_WINDOW)[:50]),
        "running_out": [(grid, meters_running_out(grid, 24, now=now)[:50]) for grid in grids],
        "stuck_runs": runs_stuck(now),
        "stuck_withdrawals": list(withdrawals_stuck(now)[:50]),
        "grids": grids,
    }
    return render(request, "web/operator.html", context)


@staff_member_required
def operator_mirror(request: HttpRequest) -> HttpResponse:
    """The chain mirror's lag (htmx, after the page: asking the node may be slow)."""
    return render(request, "web/partials/mirror_status.html", {"mirror": mirror_status()})


@staff_member_required
@require_POST
def operator_act(request: HttpRequest, action: str) -> HttpResponse:
    """The page's buttons: re-run a stuck job now (each queued and recorded)."""
    now, operator = clock.now(), request.user.get_username()
    if action == "settle":
        grid = grid_for_slug(request.POST.get("grid", ""))
        if grid is None:
            messages.error(request, "Pick a grid to settle.")
            return redirect("web:operator")
        settlement_catch_up(grid, operator, now)
        messages.success(request, f"Settlement of what is due on {grid.slug} was started.")
    elif action == "reconcile":
        payments_catch_up(operator, now)
        messages.success(request, "Stuck withdrawals and refunds are being taken up.")
    elif action == "mirror":
        mirror_catch_up(operator, now)
        messages.success(request, "The chain mirror is draining its backlog.")
    else:
        raise Http404("No such action.")
    return redirect("web:operator")
