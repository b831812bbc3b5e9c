"""The beat schedule names real tasks, and the tasks call their services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from utility import clock
from utility.celery import app
from utility.payments import tasks
from utility.payments.client import payments_client_install
from utility.payments.fake import FakeClient
from utility.payments.models import Withdrawal, WithdrawalStatus
from utility.payments.services import withdrawal_request

from .conftest import NOW


def test_the_beat_schedule_names_the_payments_tasks():
    app.loader.import_default_modules()
    for name in ("payments-reconcile", "payments-fake-redeliver"):
        assert settings.CELERY_BEAT_SCHEDULE[name]["task"] in app.tasks


@pytest.mark.django_db(transaction=True)
def test_the_reconcile_task_takes_up_a_withdrawal_whose_task_never_ran(producer, monkeypatch):
    monkeypatch.setattr(tasks.withdrawal_advance_task, "delay", lambda *args: None)  # the broker lost it
    payments_client_install(FakeClient(payout_outcome="paid"))
    withdrawal = withdrawal_request(producer, 40_000_000, "w-1", NOW)
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.HELD

    clock.clock_install(lambda: NOW + timedelta(minutes=11))
    assert tasks.payments_reconcile.delay().get() == 1

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.PAID
