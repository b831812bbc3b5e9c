"""Resident pages (buy coins, withdraw, connect a bank account), the Stripe
webhook, and the stand-in's "pay" and "finish onboarding" pages.

Each view parses input, calls one service or selector, and renders or
redirects. Every resident page requires a login and shows only the resident's
own rows (the selectors filter by owner; another resident's id is a 404).
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from utility import clock

from . import fake
from .client import ProviderDeclined, webhook_secrets
from .forms import TopUpForm, WithdrawalForm
from .selectors import (
    coin_price_for,
    connected_account_for,
    topup_for,
    topups_for,
    wallet_balance_uk,
    wallet_freeze_reason,
    withdrawal_for,
    withdrawals_for,
)
from .services import (
    PaymentsError,
    connect_account_refresh,
    connect_onboarding_url,
    topup_create,
    topup_quote_for,
    webhook_event_receive,
    withdrawal_quote_for,
    withdrawal_request,
)
from .stripe_client import WebhookSignatureInvalid, webhook_event_verify

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify the signature on the raw body, then store and process the event.
    400 for a bad signature (nothing stored, one log line); 500 when
    processing failed, so Stripe sends it again."""
    try:
        event = webhook_event_verify(request.body, request.headers.get("Stripe-Signature"), webhook_secrets())
    except WebhookSignatureInvalid as exc:
        logger.warning("stripe webhook refused from %s: %s", request.META.get("REMOTE_ADDR"), exc)
        return HttpResponseBadRequest("invalid signature")
    outcome = webhook_event_receive(event, clock.now())
    return JsonResponse({"result": outcome.result}, status=200 if outcome.ok else 500)


@login_required
def payments_home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "balance_uk": wallet_balance_uk(user),
        "frozen": wallet_freeze_reason(user),
        "price": coin_price_for(user),
        "account": connected_account_for(user),
        "topups": topups_for(user)[:20],
        "withdrawals": withdrawals_for(user)[:20],
        "backend": settings.PAYMENTS_BACKEND,
    }
    return render(request, "payments/home.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def topup_new(request: HttpRequest) -> HttpResponse:
    """GET ``?amount=10.00`` shows the quote (coins, rounded down); POST pays."""
    data = request.POST if request.method == "POST" else (request.GET if "amount" in request.GET else None)
    form, quote = TopUpForm(data), None
    if data is not None and form.is_valid():
        try:
            if request.method == "POST":
                expected = form.cleaned_data["expected_coins_uk"]
                topup = topup_create(request.user, form.amount_cents(), clock.now(), expected_coins_uk=expected)
                return redirect(topup.checkout_url)
            quote = topup_quote_for(request.user, form.amount_cents())
        except PaymentsError as exc:
            form.add_error(None, str(exc))
    return render(request, "payments/topup_new.html", {"form": form, "quote": quote})


@login_required
def topup_detail(request: HttpRequest, topup_id: str) -> HttpResponse:
    topup = topup_for(request.user, topup_id)
    if topup is None:
        raise Http404("no such top-up")
    return render(request, "payments/topup_detail.html", {"topup": topup})


@login_required
@require_http_methods(["GET", "POST"])
def withdrawal_new(request: HttpRequest) -> HttpResponse:
    """GET ``?coins=12.5`` shows the payout (rounded down); POST asks for it."""
    data = request.POST if request.method == "POST" else (request.GET if "coins" in request.GET else None)
    form, quote = WithdrawalForm(data), None
    if data is not None and form.is_valid():
        try:
            if request.method == "POST":
                request_id = form.cleaned_data["request_id"] or uuid.uuid4().hex
                withdrawal = withdrawal_request(request.user, form.amount_uk(), request_id, clock.now())
                return redirect("payments:withdrawal", withdrawal.pk)
            quote = withdrawal_quote_for(request.user, form.amount_uk())
        except PaymentsError as exc:
            form.add_error(None, str(exc))
    context = {
        "form": form,
        "quote": quote,
        "request_id": uuid.uuid4().hex,
        "account": connected_account_for(request.user),
    }
    return render(request, "payments/withdrawal_new.html", context)


@login_required
def withdrawal_detail(request: HttpRequest, withdrawal_id: str) -> HttpResponse:
    withdrawal = withdrawal_for(request.user, withdrawal_id)
    if withdrawal is None:
        raise Http404("no such withdrawal")
    return render(request, "payments/withdrawal_detail.html", {"withdrawal": withdrawal})


@login_required
@require_POST
def connect_start(request: HttpRequest) -> HttpResponse:
    """The "connect your bank account" button: off to Stripe onboarding."""
    try:
        return redirect(connect_onboarding_url(request.user, clock.now()))
    except PaymentsError as exc:
        messages.error(request, str(exc))
        return redirect("payments:home")


@login_required
def connect_return(request: HttpRequest) -> HttpResponse:
    """Back from onboarding: ask Stripe whether payouts are enabled now."""
    try:
        account = connect_account_refresh(request.user, clock.now())
    except PaymentsError as exc:
        messages.error(request, str(exc))
    else:
        if account is not None and account.payouts_enabled:
            messages.success(request, "Your bank account is connected: you can withdraw.")
        else:
            messages.warning(request, "Onboarding is not finished yet.")
    return redirect("payments:home")


@login_required
def connect_refresh(request: HttpRequest) -> HttpResponse:
    """Stripe's refresh URL (an expired link): make a new one."""
    try:
        return redirect(connect_onboarding_url(request.user, clock.now()))
    except PaymentsError as exc:
        messages.error(request, str(exc))
        return redirect("payments:home")


def _fake_only() -> None:
    if settings.PAYMENTS_BACKEND != "fake":
        raise Http404("the local stand-in is off (PAYMENTS_BACKEND is not 'fake')")


@login_required
@require_http_methods(["GET", "POST"])
def fake_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    """The stand-in's Checkout page: pay, pay by bank debit, or cancel."""
    _fake_only()
    session = fake.fake_checkout_session(session_id)
    if session is None or session["metadata"].get("user_id") != str(request.user.pk):
        raise Http404("no such checkout session")
    if request.method == "POST":
        try:
            return redirect(fake.fake_checkout_finish(session_id, request.POST.get("outcome", "")))
        except ProviderDeclined as exc:
            return HttpResponseBadRequest(str(exc))
    return render(request, "payments/fake_checkout.html", {"session": session})


@login_required
@require_http_methods(["GET", "POST"])
def fake_onboarding(request: HttpRequest, link_id: str) -> HttpResponse:
    """The stand-in's Connect onboarding page: one button, "finish"."""
    _fake_only()
    link = fake.fake_onboarding_link(link_id)
    account = connected_account_for(request.user)
    if link is None or account is None or link["account"] != account.stripe_account_id:
        raise Http404("no such onboarding link")
    if request.method == "POST":
        return redirect(fake.fake_onboarding_finish(link_id))
    return render(request, "payments/fake_onboarding.html", {"link": link})
