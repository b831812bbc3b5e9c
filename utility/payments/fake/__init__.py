"""The local stand-in for Stripe (``PAYMENTS_BACKEND=fake``, the embedded default).

``FakeClient`` implements the same ``PaymentsClient`` the services call with
real keys, so the demo runs the production code path: Checkout opens the
stand-in's "pay" page, Connect onboarding its "finish onboarding" page, and
every outcome arrives as a Stripe-shaped event, signed with Stripe's scheme
and the configured webhook secret, posted to the real webhook view (in
process, after commit; undelivered ones are sent again by
``fake_events_redeliver``, as Stripe retries). Objects live in the database
(``FakeObject``) so the web process and workers share them; idempotency keys
behave like Stripe's. It never succeeds silently: a payment is paid only by
pressing "Pay", and it is refused when a live key is configured
(``client.payments_client``).

Rule shared with real Stripe: never call the client inside a database
transaction — the provider's state must not be rolled back with ours.
"""

from .client import FakeClient
from .controls import (
    CHECKOUT_OUTCOMES,
    fake_checkout_finish,
    fake_checkout_session,
    fake_dispute_close,
    fake_dispute_open,
    fake_onboarding_finish,
    fake_onboarding_link,
    fake_payout_settle,
)
from .store import fake_event_deliver, fake_events_redeliver, fake_sign

__all__ = [
    "CHECKOUT_OUTCOMES",
    "FakeClient",
    "fake_checkout_finish",
    "fake_checkout_session",
    "fake_dispute_close",
    "fake_dispute_open",
    "fake_event_deliver",
    "fake_events_redeliver",
    "fake_onboarding_finish",
    "fake_onboarding_link",
    "fake_payout_settle",
    "fake_sign",
]
