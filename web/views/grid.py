"""The grid page: the seed's picture of a microgrid, live (htmx polling)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from meters.models import Grid
from meters.reports import grid_for_slug, grid_picture, grids_list
from settlement.reports import runs_of_grid
from utility import clock

from ..presenters import grid_tiles, runs_chart
from ..selectors import demo_clock_running
from ..services import demo_advance

POLL_S = 5


def _grid(slug: str | None) -> Grid:
    grid = grid_for_slug(slug) if slug else grids_list().first()
    if grid is None:
        raise Http404("No such grid." if slug else "No grid has been set up yet.")
    return grid


def _live_context(request: HttpRequest, grid: Grid) -> dict:
    now = clock.now()
    picture = grid_picture(grid, now)
    runs = runs_of_grid(grid, limit=48)
    latest = runs[-1] if runs else None
    imports = sum(imp for imp, _exp in picture.readings.values())
    exports = sum(exp for _imp, exp in picture.readings.values())
    return {
        "grid": grid,
        "now": now,
        "picture": picture,
        "tiles": grid_tiles(picture.meters, picture.readings, request.user),
        "totals": {"import_wh": imports, "export_wh": exports, "loss_wh": exports - imports},
        "latest_run": latest,
        "chart": runs_chart(runs),
        "poll_s": POLL_S,
        "demo_clock": demo_clock_running(),
    }


@login_required
def grid_page(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    grid = _grid(slug)
    context = _live_context(request, grid)
    context["grids"] = list(grids_list())
    return render(request, "web/grid.html", context)


@login_required
def grid_live(request: HttpRequest, slug: str) -> HttpResponse:
    """The live part of the grid page (htmx polls it every few seconds)."""
    return render(request, "web/partials/grid_live.html", _live_context(request, _grid(slug)))


@login_required
@require_POST
def grid_advance(request: HttpRequest, slug: str) -> HttpResponse:
    """The demo's clock button: one interval ahead (absent outside the demo)."""
    grid = _grid(slug)
    if not demo_clock_running():
        raise Http404("Only the demo's clock can be moved.")
    moved_to = demo_advance(request.user.get_username(), clock.now())
    if request.headers.get("HX-Request"):
        return render(request, "web/partials/grid_live.html", _live_context(request, grid))
    messages.info(request, f"The demo clock moved to {moved_to:%Y-%m-%d %H:%M} UTC.")
    return redirect("web:grid", grid.slug)
