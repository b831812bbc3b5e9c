"""The market's pages: each view parses a form, makes one service call and
redirects with a message, or shows the form again with a clear error (400)
and nothing changed. Times are the grid's clock (``utility.clock``)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from meters.models import Grid, Meter
from utility import clock
from utility.lib.timeutil import interval_floor

from . import selectors
from .forms import BidForm, BilateralOfferForm, LimitsForm, OfferForm
from .services import (
    MarketError,
    bid_cancel,
    bid_place,
    bilateral_offer,
    deposit_pay,
    limits_publish,
    limits_withdraw,
    offer_cancel,
    offer_create,
)


def _grid_for(request: HttpRequest) -> Grid | None:
    """``?grid=<slug>``, else the grid of the user's first meter, else the first grid."""
    if slug := request.GET.get("grid"):
        return Grid.objects.filter(slug=slug).first()
    meter = Meter.objects.filter(owner_id=request.user.pk).order_by("pk").first()
    return meter.grid if meter else Grid.objects.order_by("pk").first()


@login_required
def market_page(request: HttpRequest) -> HttpResponse:
    """Open offers with their countdowns, buyers' limits, and the user's own
    offers, bids, limits and contracts (with delivery and payments)."""
    grid = _grid_for(request)
    user = request.user
    context = {
        "grid": grid,
        "now": clock.now(),
        "offers": list(selectors.offers_open(grid)) if grid else [],
        "limits": list(selectors.limits_open(grid)) if grid else [],
        "my_offers": list(selectors.offers_of(user)[:50]),
        "my_bids": list(selectors.bids_of(user)[:50]),
        "my_limits": list(selectors.limits_of(user)[:20]),
        "my_contracts": list(selectors.contracts_of(user)[:50]),
        "prices": selectors.price_history(grid, 24) if grid else [],
    }
    return render(request, "marketplace/market.html", context)


def _refused(request, template: str, context: dict, form, exc: MarketError) -> HttpResponse:
    form.add_error(None, str(exc))
    return render(request, template, context, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def offer_new(request: HttpRequest) -> HttpResponse:
    """A producer puts energy up for auction."""
    form = OfferForm(request.POST or None, user=request.user, selling=True)
    context = {"form": form}
    if request.method == "GET":
        return render(request, "marketplace/offer_new.html", context)
    if not form.is_valid():
        return render(request, "marketplace/offer_new.html", context, status=400)
    data, now = form.cleaned_data, clock.now()
    start, end = form.window(data["meter"].grid.interval_s)
    try:
        offer = offer_create(
            request.user, data["meter"], energy_wh=data["energy"], delivery_start=start, delivery_end=end,
            start_price_uk_per_kwh=data["start_price"], reserve_price_uk_per_kwh=data["reserve_price"],
            ends_at=now.replace(microsecond=0) + timedelta(minutes=data["runs_minutes"]), now=now,
        )  # fmt: skip
    except MarketError as exc:
        return _refused(request, "marketplace/offer_new.html", context, form, exc)
    messages.success(request, f"Your offer {offer.pk} is up for auction.")
    return redirect("market:offer", offer_id=offer.pk)


@login_required
@require_http_methods(["GET", "POST"])
def offer_page(request: HttpRequest, offer_id: int) -> HttpResponse:
    """One offer, its bids and a bid form (POST: bid)."""
    offer = selectors.offer_get(offer_id)
    if offer is None:
        raise Http404("No such offer.")
    form = BidForm(request.POST or None, user=request.user, selling=False, grid=offer.grid)
    context = {"offer": offer, "form": form, "best": selectors.best_bid(offer), "now": clock.now()}
    if request.method == "GET":
        return render(request, "marketplace/offer.html", context)
    if not form.is_valid():
        return render(request, "marketplace/offer.html", context, status=400)
    try:
        bid_place(request.user, offer.pk, form.cleaned_data["meter"], form.cleaned_data["price"], clock.now())
    except MarketError as exc:
        return _refused(request, "marketplace/offer.html", context, form, exc)
    messages.success(request, "Your bid stands; its coins are held until you are outbid or the auction ends.")
    return redirect("market:offer", offer_id=offer.pk)


@login_required
@require_POST
def offer_cancel_view(request: HttpRequest, offer_id: int) -> HttpResponse:
    return _act(request, lambda: offer_cancel(request.user, offer_id, clock.now()), "Your offer is withdrawn.")


@login_required
@require_POST
def bid_cancel_view(request: HttpRequest, bid_id: int) -> HttpResponse:
    return _act(request, lambda: bid_cancel(request.user, bid_id, clock.now()), "Your bid is cancelled.")


@login_required
@require_POST
def limits_withdraw_view(request: HttpRequest, limit_id: int) -> HttpResponse:
    return _act(request, lambda: limits_withdraw(request.user, limit_id, clock.now()), "Your limits are withdrawn.")


@login_required
@require_POST
def contract_deposit(request: HttpRequest, contract_id: int) -> HttpResponse:
    done = "Deposit paid: the contract is active and your meter is switched on."
    return _act(request, lambda: deposit_pay(request.user, contract_id, clock.now()), done)


def _act(request: HttpRequest, action, done: str) -> HttpResponse:
    """A one-button action: do it, then back to the market with what happened."""
    try:
        action()
    except MarketError as exc:
        messages.error(request, str(exc))
        return redirect("market:market")
    messages.success(request, done)
    return redirect("market:market")


@login_required
@require_http_methods(["GET", "POST"])
def limits_new(request: HttpRequest) -> HttpResponse:
    """A buyer publishes standing limits for one of their meters."""
    form = LimitsForm(request.POST or None, user=request.user, selling=False)
    context = {"form": form}
    if request.method == "GET":
        return render(request, "marketplace/limits_new.html", context)
    if not form.is_valid():
        return render(request, "marketplace/limits_new.html", context, status=400)
    data = form.cleaned_data
    try:
        limits_publish(
            request.user, data["meter"], period_start=data["period_start"], period_end=data["period_end"],
            max_price_uk_per_kwh=data["max_price"], min_payment_uk=data["min_payment"] or 0,
            max_payment_uk=data["max_payment"], max_deposit_uk=data["max_deposit"] or 0,
            v_min_dv=data["v_min"], v_max_dv=data["v_max"], tolerance_bp=data["tolerance"] or 0, now=clock.now(),
        )  # fmt: skip
    except MarketError as exc:
        return _refused(request, "marketplace/limits_new.html", context, form, exc)
    messages.success(request, "Your limits are published: an offer inside all of them is accepted for you.")
    return redirect("market:market")


@login_required
@require_http_methods(["GET", "POST"])
def limit_offer(request: HttpRequest, limit_id: int) -> HttpResponse:
    """A seller offers to the buyer behind a set of limits (accepted at once if inside them)."""
    limit = selectors.limit_get(limit_id)
    if limit is None or not limit.active:
        raise Http404("No such active limits.")
    form = BilateralOfferForm(request.POST or None, user=request.user, selling=True, grid=limit.grid)
    context = {"limit": limit, "form": form, "next_start": interval_floor(clock.now(), limit.grid.interval_s)}
    if request.method == "GET":
        return render(request, "marketplace/limit_offer.html", context)
    if not form.is_valid():
        return render(request, "marketplace/limit_offer.html", context, status=400)
    data = form.cleaned_data
    start, end = form.window(limit.grid.interval_s)
    try:
        contract = bilateral_offer(
            request.user, data["meter"], limit.pk, price_uk_per_kwh=data["price"],
            wh_per_interval=data["energy_per_interval"], delivery_start=start, delivery_end=end,
            deposit_uk=data["deposit"], v_min_dv=data["v_min"], v_max_dv=data["v_max"], now=clock.now(),
        )  # fmt: skip
    except MarketError as exc:
        return _refused(request, "marketplace/limit_offer.html", context, form, exc)
    messages.success(request, f"Accepted: contract {contract.pk} ({contract.get_status_display().lower()}).")
    return redirect("market:contract", contract_id=contract.pk)


@login_required
def contract_page(request: HttpRequest, contract_id: int) -> HttpResponse:
    """One contract with its deliveries and payments (parties and staff only)."""
    contract = selectors.contract_get(contract_id, request.user)
    if contract is None:
        raise Http404("No such contract.")
    return render(request, "marketplace/contract.html", {"contract": contract, "now": clock.now()})


@staff_member_required
def operator_trades(request: HttpRequest) -> HttpResponse:
    """Operators: every recent offer and contract of every grid."""
    offers, contracts = selectors.trades_all()
    return render(request, "marketplace/operator.html", {"offers": offers, "contracts": contracts})
