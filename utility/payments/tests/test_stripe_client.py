"""``StripeClient`` as the ``stripe`` library sends it, for the calls localstripe
lacks (Checkout, Connect, transfers, payouts): the parameters, the idempotency
keys, the connected account header, and how errors are sorted."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from utility.payments.client import ProviderDeclined, ProviderUnavailable
from utility.payments.stripe_client import StripeClient


class Recording(stripe.HTTPClient):
    """Answers every request with ``reply`` and remembers what was sent."""

    name = "recording"

    def __init__(self, reply: dict, status: int = 200) -> None:
        super().__init__()
        self.reply, self.status, self.sent = reply, status, []

    def request(self, method, url, headers, post_data=None, **kwargs):
        form = parse_qs(post_data.decode() if isinstance(post_data, bytes) else post_data or "")
        self.sent.append((method, urlsplit(url).path, dict(headers or {}), {k: v[0] for k, v in form.items()}))
        return json.dumps(self.reply), self.status, {}

    def close(self):
        pass


def client_with(reply: dict, status: int = 200) -> tuple[StripeClient, Recording]:
    http = Recording(reply, status)
    return StripeClient("sk_test_x", max_network_retries=0, http_client=http), http


def test_a_checkout_session_carries_the_top_up_on_the_session_and_the_payment_intent():
    client, http = client_with({"id": "cs_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/1"})

    session = client.checkout_session_create(
        amount_cents=1_000,
        currency="usd",
        product_name="3.333333 coins on demo",
        metadata={"topup_id": "t-1", "user_id": "7"},
        success_url="https://grid.example/ok",
        cancel_url="https://grid.example/no",
        idempotency_key="checkout:t-1",
    )

    assert (session.id, session.url) == ("cs_1", "https://checkout.stripe.com/c/1")
    method, path, headers, form = http.sent[0]
    assert (method, path, headers["Idempotency-Key"]) == ("post", "/v1/checkout/sessions", "checkout:t-1")
    assert form["mode"] == "payment" and form["client_reference_id"] == "t-1"
    assert form["line_items[0][price_data][unit_amount]"] == "1000"
    assert form["metadata[topup_id]"] == form["payment_intent_data[metadata][topup_id]"] == "t-1"


def test_a_transfer_is_keyed_and_grouped_by_the_withdrawal_id():
    client, http = client_with({"id": "tr_1", "object": "transfer"})

    client.transfer_create(
        amount_cents=12_000,
        currency="usd",
        destination="acct_1",
        transfer_group="w-1",
        metadata={"withdrawal_id": "w-1"},
        idempotency_key="w-1",
    )

    _, path, headers, form = http.sent[0]
    assert (path, headers["Idempotency-Key"], form["transfer_group"], form["destination"]) == (
        "/v1/transfers",
        "w-1",
        "w-1",
        "acct_1",
    )


def test_a_payout_is_made_on_the_connected_account():
    client, http = client_with({"id": "po_1", "object": "payout", "status": "pending"})

    payout = client.payout_create(
        account_id="acct_1",
        amount_cents=12_000,
        currency="usd",
        metadata={"withdrawal_id": "w-1"},
        idempotency_key="payout:w-1",
    )

    _, path, headers, form = http.sent[0]
    assert (payout.id, payout.status, form["amount"], form["metadata[withdrawal_id]"]) == (
        "po_1",
        "pending",
        "12000",
        "w-1",
    )
    assert (path, headers["Stripe-Account"], headers["Idempotency-Key"]) == ("/v1/payouts", "acct_1", "payout:w-1")


def test_an_express_account_is_created_with_manual_payouts():
    client, http = client_with({"id": "acct_1", "object": "account", "details_submitted": False})

    state = client.account_create(email="p@example.org", metadata={"user_id": "7"}, idempotency_key="account:7")

    _, _, headers, form = http.sent[0]
    assert (state.id, state.payouts_enabled, headers["Idempotency-Key"]) == ("acct_1", False, "account:7")
    assert (form["type"], form["settings[payouts][schedule][interval]"]) == ("express", "manual")


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (400, "invalid_request_error", ProviderDeclined),
        (402, "card_error", ProviderDeclined),
        (401, "invalid_request_error", ProviderUnavailable),  # our key, not the resident's fault
        (429, "invalid_request_error", ProviderUnavailable),
        (500, "api_error", ProviderUnavailable),
    ],
)
def test_errors_are_sorted_into_declined_and_unavailable(status, error_type, expected):
    client, _ = client_with({"error": {"type": error_type, "message": "no"}}, status)
    with pytest.raises(expected):
        client.refund_create(payment_intent_id="pi_1", amount_cents=1_000, metadata={}, idempotency_key="refund:r")


def test_a_payout_is_found_by_its_withdrawal_id_in_the_metadata():
    client, http = client_with(
        {
            "object": "list",
            "url": "/v1/payouts",
            "has_more": False,
            "data": [
                {"id": "po_0", "object": "payout", "status": "paid", "metadata": {}},
                {"id": "po_1", "object": "payout", "status": "in_transit", "metadata": {"withdrawal_id": "w-1"}},
            ],
        }
    )

    found = client.payout_find(account_id="acct_1", withdrawal_id="w-1")

    assert (found.id, found.status) == ("po_1", "in_transit")
    assert http.sent[0][2]["Stripe-Account"] == "acct_1"
    assert client.payout_find(account_id="acct_1", withdrawal_id="w-2") is None


def test_a_transfer_is_found_by_its_group():
    client, http = client_with(
        {"object": "list", "url": "/v1/transfers", "has_more": False, "data": [{"id": "tr_1", "object": "transfer"}]}
    )

    assert client.transfer_find(transfer_group="w-1").id == "tr_1"
    assert http.sent[0][:2] == ("get", "/v1/transfers")
