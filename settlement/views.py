"""The public overview page (the full web app comes with the web issue)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from meters.models import Grid
from utility.lib.energy import format_wh
from utility.lib.money import format_uk

from .selectors import runs_recent


def _run_row(run) -> dict:
    return {
        "interval_start": run.interval_start,
        "import_kwh": format_wh(run.import_wh),
        "export_kwh": format_wh(run.export_wh),
        "loss": "—" if run.loss_bp is None else f"{run.loss_bp / 100:.2f} %",
        "pool": format_uk(run.pool_uk),
        "fee": format_uk(run.fee_uk),
        "carry": format_uk(run.carry_out_uk),
        "alerts": run.alerts,
    }


def overview(request: HttpRequest) -> HttpResponse:
    grids = []
    for grid in Grid.objects.order_by("slug"):
        meters = grid.meters.select_related("account").order_by("public_id")
        grids.append(
            {
                "grid": grid,
                "tariff": format_uk(grid.tariff_uk_per_kwh),
                "fee": format_uk(grid.fee_fixed_uk),
                "meters": [
                    {
                        "public_id": m.public_id,
                        "kind": m.kind,
                        "public": m.public,
                        "label": m.label,
                        "balance_uk": m.account.balance_uk,
                        "balance": format_uk(m.account.balance_uk),
                    }
                    for m in meters
                ],
                "runs": [_run_row(r) for r in runs_recent(grid)],
            }
        )
    return render(request, "settlement/overview.html", {"grids": grids})
