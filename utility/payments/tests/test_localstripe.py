"""Integration: the real ``stripe`` client against ``localstripe`` (PyPI),
started on 127.0.0.1, for what it supports — payment intents, refunds, and
webhooks it signs itself and posts over HTTP to this site's webhook view
(``live_server``). Checkout and Connect are not in localstripe; the stand-in
covers them. Fails, never skips, when localstripe cannot start.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import stripe

from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import wallet_ensure
from utility.payments.client import CheckoutSession, payments_client_install
from utility.payments.models import Refund, RefundStatus, TopUp, TopUpStatus, WebhookEvent
from utility.payments.services import refund_submit, topup_create, topup_refund
from utility.payments.stripe_client import StripeClient

from .conftest import NOW
from .helpers import WEBHOOK_SECRET

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SERVER = Path(__file__).with_name("localstripe_server.py")
API_KEY = "sk_test_commonwatt_localstripe"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    """localstripe's base URL; the process is killed afterwards."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("localstripe") / "localstripe.log").open("w")
    process = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if process.poll() is not None:
                pytest.fail(f"localstripe exited with {process.returncode}; see {log.name}", pytrace=False)
            try:
                urllib.request.urlopen(f"{base}/js.stripe.com/v3/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"localstripe did not answer on {base} within 10 s; see {log.name}", pytrace=False)
        yield base
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def _register_webhook(base: str, name: str, url: str, secret: str) -> None:
    data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{base}/_config/webhooks/{name}", data=data), timeout=5).close()


class CheckoutLess:
    """The real ``StripeClient`` for everything localstripe has; a Checkout
    Session (which it has not) is stood in for by its id only."""

    def __init__(self, real: StripeClient) -> None:
        self.real = real

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def checkout_session_create(self, **kwargs) -> CheckoutSession:
        return CheckoutSession(f"cs_local_{kwargs['idempotency_key'].rsplit(':', 1)[-1]}", "http://127.0.0.1/none")


def _wait_for(predicate, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_payment_credits_from_localstripes_signed_webhook_and_refunds_through_the_stripe_client(
    localstripe, live_server, settings, make_resident, caplog
):
    settings.PAYMENTS_BACKEND = "stripe"
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = localstripe
    webhook_url = f"{live_server.url}/payments/webhook/"
    _register_webhook(localstripe, "commonwatt", webhook_url, WEBHOOK_SECRET)
    _register_webhook(localstripe, "impostor", webhook_url, "whsec_not_the_one_we_trust")
    payments_client_install(CheckoutLess(StripeClient(API_KEY, localstripe)))
    user = make_resident()
    topup = topup_create(user, 1_000, NOW)

    # The customer's side (what Checkout does): a card payment carrying the
    # top-up in its metadata, as payment_intent_data.metadata makes it.
    customer = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe})
    card = customer.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    intent = customer.v1.payment_intents.create(
        params={
            "amount": 1_000,
            "currency": "usd",
            "payment_method": card.id,
            "confirm": True,
            "metadata": {"topup_id": str(topup.pk), "user_id": str(user.pk)},
        }
    )
    assert intent.status == "succeeded"

    assert _wait_for(lambda: TopUp.objects.get(pk=topup.pk).status == TopUpStatus.PAID), "no credit from localstripe"
    topup.refresh_from_db()
    assert (topup.payment_intent_id, topup.credited_uk) == (intent.id, 3_333_333)
    assert account_balance(wallet_ensure(user).pk) == 3_333_333
    stored = WebhookEvent.objects.get(type="payment_intent.succeeded")
    assert stored.processed_at is not None and stored.payload["data"]["object"]["id"] == intent.id
    # The impostor's copy (signed with a secret we do not trust): a 400 and a
    # log line, nothing stored.
    assert _wait_for(lambda: any("stripe webhook refused" in r.getMessage() for r in caplog.records))
    assert WebhookEvent.objects.count() == 1

    refund = topup_refund(topup.pk, "olga", "integration test", NOW)
    refund = refund_submit(refund.pk)  # the real client: POST /v1/refunds at localstripe

    assert refund.status == RefundStatus.SUCCEEDED and refund.stripe_refund_id.startswith("re_")
    assert Refund.objects.get(pk=refund.pk).stripe_refund_id == refund.stripe_refund_id
    charge_id = intent.latest_charge if isinstance(intent.latest_charge, str) else intent.latest_charge.id
    assert customer.v1.charges.retrieve(charge_id).amount_refunded == 1_000
    assert account_balance(wallet_ensure(user).pk) == 0
    assert ledger_problems() == []
