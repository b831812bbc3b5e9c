"""``FakeClient``: the ``PaymentsClient`` the services call, on the stand-in."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from ..client import AccountState, CheckoutSession, ProviderDeclined, ProviderObject
from ..models import FakeObject
from .controls import fake_payout_settle
from .store import event_emit, object_create, object_get, object_save


class FakeClient:
    """``PaymentsClient`` backed by the stand-in. ``payout_outcome`` settles
    each new payout at once (``"paid"`` for the demo; ``None`` leaves it
    pending for ``fake_payout_settle``)."""

    def __init__(self, payout_outcome: str | None = "paid") -> None:
        self.payout_outcome = payout_outcome

    def checkout_session_create(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        fields = {
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount_cents,
            "currency": currency,
            "product_name": product_name,
            "client_reference_id": metadata.get("topup_id"),
            "metadata": metadata,
            "payment_intent": None,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        session, _ = object_create("checkout.session", "cs", fields, idempotency_key)
        url = settings.SITE_URL + reverse("payments:fake_checkout", args=[session["id"]])
        return CheckoutSession(session["id"], url)

    @transaction.atomic
    def refund_create(
        self, *, payment_intent_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderObject:
        found = FakeObject.objects.filter(idempotency_key=idempotency_key).first()
        if found is not None:
            return ProviderObject(found.data["id"], found.data["status"])
        intent = object_get(payment_intent_id, "payment_intent")
        charge = object_get(intent["latest_charge"], "charge", lock=True)
        if charge.get("disputed"):
            raise ProviderDeclined(f"Charge {charge['id']} has been charged back; cannot issue a refund.")
        if charge["amount_refunded"] + amount_cents > charge["amount"]:
            raise ProviderDeclined(f"Charge {charge['id']} has already been refunded.")
        fields = {"amount": amount_cents, "currency": charge["currency"], "charge": charge["id"]}
        refund, _ = object_create(
            "refund",
            "re",
            {**fields, "payment_intent": payment_intent_id, "metadata": metadata, "status": "succeeded"},
            idempotency_key,
        )
        charge["amount_refunded"] += amount_cents
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        object_save(charge)
        event_emit("charge.refunded", charge)
        return ProviderObject(refund["id"], refund["status"])

    def account_create(self, *, email: str, metadata: dict[str, str], idempotency_key: str) -> AccountState:
        fields = {
            "type": "express",
            "email": email,
            "metadata": metadata,
            "details_submitted": False,
            "payouts_enabled": False,
            "charges_enabled": False,
            "settings": {"payouts": {"schedule": {"interval": "manual"}}},
        }
        account, _ = object_create("account", "acct", fields, idempotency_key)
        return AccountState(account["id"], False, False)

    def account_retrieve(self, account_id: str) -> AccountState:
        account = object_get(account_id, "account")
        return AccountState(account["id"], account["details_submitted"], account["payouts_enabled"])

    def account_link_create(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        object_get(account_id, "account")
        fields = {"account": account_id, "refresh_url": refresh_url, "return_url": return_url}
        link, _ = object_create("account_link", "link", fields)
        return settings.SITE_URL + reverse("payments:fake_onboarding", args=[link["id"]])

    def transfer_find(self, *, transfer_group: str) -> ProviderObject | None:
        found = FakeObject.objects.filter(kind="transfer", group=transfer_group).order_by("created_at").first()
        return ProviderObject(found.pk, "created") if found else None

    def transfer_create(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        transfer_group: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject:
        account = object_get(destination, "account")
        if not account["payouts_enabled"]:
            raise ProviderDeclined(f"Account {destination} cannot receive transfers: onboarding is not finished")
        fields = {
            "amount": amount_cents,
            "currency": currency,
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": metadata,
            "reversed": False,
            "reversals": {"object": "list", "data": []},
        }
        transfer, _ = object_create("transfer", "tr", fields, idempotency_key, group=transfer_group)
        return ProviderObject(transfer["id"], "created")

    @transaction.atomic
    def transfer_reverse(self, *, transfer_id: str, metadata: dict[str, str], idempotency_key: str) -> ProviderObject:
        transfer = object_get(transfer_id, "transfer", lock=True)
        fields = {"transfer": transfer_id, "amount": transfer["amount"], "metadata": metadata}
        reversal, created = object_create("transfer_reversal", "trr", fields, idempotency_key, group=transfer_id)
        if created:
            if transfer["reversed"]:
                raise ProviderDeclined(f"Transfer {transfer_id} is already fully reversed.")
            transfer["reversed"] = True
            transfer["reversals"]["data"].append(reversal)
            object_save(transfer)
            event_emit("transfer.reversed", transfer)
        return ProviderObject(reversal["id"], "reversed")

    def payout_find(self, *, account_id: str, withdrawal_id: str) -> ProviderObject | None:
        for payout in FakeObject.objects.filter(kind="payout", group=account_id).order_by("created_at"):
            if payout.data["metadata"].get("withdrawal_id") == withdrawal_id:
                return ProviderObject(payout.pk, payout.data["status"])
        return None

    def payout_create(
        self,
        *,
        account_id: str,
        amount_cents: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject:
        with transaction.atomic():
            object_get(account_id, "account")
            fields = {"amount": amount_cents, "currency": currency, "metadata": metadata, "status": "pending"}
            payout, created = object_create("payout", "po", fields, idempotency_key, group=account_id)
            if created:
                event_emit("payout.created", payout, account=account_id)
        if created and self.payout_outcome:
            fake_payout_settle(payout["id"], self.payout_outcome)
        return ProviderObject(payout["id"], payout["status"])

    def payout_retrieve(self, *, account_id: str, payout_id: str) -> ProviderObject:
        payout = object_get(payout_id, "payout")
        return ProviderObject(payout["id"], payout["status"])
