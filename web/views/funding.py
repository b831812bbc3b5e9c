"""Fund a meter: find it (a public street light by id or label, one's own, or
any meter by its exact id), say how much, confirm. Two steps, one request id:
a double click, a reload or a retry moves the coins once."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from meters.funding import FundingError, meter_fund
from meters.reports import Access, meter_access, meters_of_owner, meters_public_search
from utility import clock
from utility.ledger.services import InsufficientFunds
from utility.lib.money import format_uk
from utility.payments.selectors import wallet_balance_uk, wallet_freeze_reason

from ..forms import FundForm, MeterSearchForm
from ..presenters import meter_cards


def _search(request: HttpRequest) -> tuple[MeterSearchForm, list]:
    form = MeterSearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    return form, meters_public_search(query)


@login_required
def fund_search(request: HttpRequest) -> HttpResponse:
    """The live search's results (htmx partial)."""
    _form, results = _search(request)
    return render(request, "web/partials/fund_results.html", {"results": results})


def funding_error_message(exc: FundingError) -> str:
    """The service's refusal, with amounts in coins rather than µk."""
    cause = exc.__cause__
    if isinstance(cause, InsufficientFunds):
        return (
            f"Your wallet holds {format_uk(cause.balance_uk)} k; "
            f"{format_uk(cause.needed_uk)} k cannot be moved. Buy coins first."
        )
    return str(exc)


def _target(request: HttpRequest, public_id: str):
    """The meter being funded and what the user may see of it, or None."""
    return meter_access(public_id, request.user) if public_id else None


@login_required
@require_http_methods(["GET", "POST"])
def fund(request: HttpRequest) -> HttpResponse:
    """GET: search and pick (``?meter=<id>`` picks). POST without a request id:
    check and show the confirmation; POST with one: move the coins."""
    search_form, results = _search(request)
    data = request.POST if request.method == "POST" else None
    initial = {"meter": request.GET.get("meter", "")}
    form = FundForm(data, initial=initial)
    target = _target(request, request.POST.get("meter") or request.GET.get("meter", ""))
    context = {
        "search_form": search_form,
        "results": results,
        "own": meter_cards(list(meters_of_owner(request.user).filter(active=True)), clock.now()),
        "balance_uk": wallet_balance_uk(request.user),
        "frozen": wallet_freeze_reason(request.user),
        "form": form,
        "target": target,
    }
    if request.method == "GET":
        return render(request, "web/fund.html", context)
    if form.is_valid() and target is None:
        form.add_error("meter", f"No meter has the id “{form.cleaned_data['meter']}”.")
    if not form.is_valid():
        return render(request, "web/fund.html", context, status=400)
    data = form.cleaned_data
    if not data["request_id"]:
        context["confirm"] = {"amount_uk": data["amount"], "request_id": uuid.uuid4().hex}
        return render(request, "web/fund.html", context)
    try:
        funded = meter_fund(request.user, target.meter, data["amount"], data["request_id"])
    except FundingError as exc:
        form.add_error(None, funding_error_message(exc))
        return render(request, "web/fund.html", context, status=400)
    if funded.created:
        messages.success(request, f"You funded {target.meter.public_id} with {format_uk(data['amount'])} k.")
    else:
        messages.info(request, "That funding was already done; nothing moved again.")
    if target.access == Access.FUND_ONLY:
        return redirect("web:fund")
    return redirect(reverse("web:meter", args=[target.meter.public_id]) + "?funded=1")
