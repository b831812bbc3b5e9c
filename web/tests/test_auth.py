"""Signing up, logging in (rate limited), password resets, the profile, tokens."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from utility.ledger.models import Account

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db
User = get_user_model()


def sign_up(client, **overrides):
    data = {"username": "newbie", "email": "newbie@example.org", "password1": PASSWORD, "password2": PASSWORD}
    return client.post(reverse("web:signup"), {**data, **overrides})


def test_sign_up_makes_a_resident_with_a_wallet_and_logs_in(client):
    response = sign_up(client)
    assert response.status_code == 302 and response.url == reverse("web:dashboard")
    user = User.objects.get(username="newbie")
    assert Account.objects.filter(owner=user, kind="wallet", balance_uk=0).exists()
    assert client.get(reverse("web:dashboard")).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password2": "something-else-entirely"}, "password2", "The two passwords differ."),
        ({"password1": "12345678", "password2": "12345678"}, "password1", "This password is too common."),
        ({"email": "not-an-address"}, "email", "Enter a valid email address."),
        ({"username": "bad name!"}, "username", "Enter a valid username"),
        ({"username": ""}, "username", "This field is required."),
    ],
)
def test_bad_sign_up_says_why_and_creates_nobody(client, overrides, field, message):
    response = sign_up(client, **overrides)
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors
    assert not User.objects.exists() and not Account.objects.exists()


def test_a_taken_username_is_refused(client, town):
    response = sign_up(client, username="ALICE")
    assert response.status_code == 400
    assert "That username is taken." in response.content.decode()
    assert User.objects.filter(username__iexact="alice").count() == 1


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", "alice@example.org", PASSWORD)


def login(client, username="alice", password=PASSWORD, path=None):
    return client.post(path or reverse("web:login"), {"username": username, "password": password})


def test_log_in_and_out(client, alice):
    assert login(client).status_code == 302
    assert client.get(reverse("web:dashboard")).status_code == 200
    assert client.get(reverse("web:logout")).status_code == 405  # a link cannot log anyone out
    assert client.post(reverse("web:logout")).status_code == 302
    assert client.get(reverse("web:dashboard")).status_code == 302


def test_wrong_password_is_a_clear_400(client, alice):
    response = login(client, password="wrong")
    assert response.status_code == 400
    assert "Please enter a correct username and password" in response.content.decode()


def test_login_is_rate_limited_even_with_the_right_password(client, alice, settings):
    for _ in range(settings.LOGIN_FAILURES_MAX):
        assert login(client, password="wrong").status_code == 400
    locked = login(client)
    assert locked.status_code == 429
    assert "Too many failed log-ins. Try again in 15 minutes." in locked.content.decode()
    assert client.get(reverse("web:dashboard")).status_code == 302
    # Another user from the same address is not locked by alice's failures.
    User.objects.create_user("bob", "bob@example.org", PASSWORD)
    assert login(client, username="bob").status_code == 302


def test_admin_login_and_the_token_endpoint_share_the_limit(client, alice, settings):
    alice.is_staff = True
    alice.save()
    for _ in range(settings.LOGIN_FAILURES_MAX):
        login(client, password="wrong", path=reverse("admin:login"))
    admin_page = login(client, path=reverse("admin:login"))
    assert "Too many failed log-ins" in admin_page.content.decode()
    token = client.post(
        reverse("api:token"), {"username": "alice", "password": PASSWORD}, content_type="application/json"
    )
    assert token.status_code == 429
    assert token.json()["error"]["code"] == "login_locked"


def test_the_address_limit_stops_spraying_many_usernames(client, alice, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS_MAX = 3
    for name in ("x1", "x2", "x3"):
        login(client, username=name, password="wrong")
    assert login(client).status_code == 429


def test_a_success_clears_the_username_count(client, alice, settings):
    for _ in range(settings.LOGIN_FAILURES_MAX - 1):
        login(client, password="wrong")
    assert login(client).status_code == 302
    client.post(reverse("web:logout"))
    for _ in range(settings.LOGIN_FAILURES_MAX - 1):
        login(client, password="wrong")
    assert login(client).status_code == 302


def test_password_reset_by_email(client, alice):
    response = client.post(reverse("web:password_reset"), {"email": "alice@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == "Your Commonwatt password"
    link = re.search(r"http://testserver(/password/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and form_page.context["validlink"]
    new = "another-long-password-77"
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    assert login(client, password=new).status_code == 302


def test_password_reset_for_an_unknown_address_says_the_same(client, alice):
    response = client.post(reverse("web:password_reset"), {"email": "nobody@example.org"})
    assert response.status_code == 302 and not mail.outbox


def test_profile_edit_and_bad_email(client, alice):
    client.force_login(alice)
    ok = client.post(reverse("web:profile"), {"email": "a@example.org", "first_name": "Alice", "last_name": "A"})
    assert ok.status_code == 302
    alice.refresh_from_db()
    assert alice.first_name == "Alice"
    bad = client.post(reverse("web:profile"), {"email": "nope", "first_name": "X"})
    assert bad.status_code == 400 and "Enter a valid email address." in bad.content.decode()
    alice.refresh_from_db()
    assert alice.first_name == "Alice" and alice.email == "a@example.org"


def test_api_token_issue_use_rotate_revoke(client, alice):
    client.force_login(alice)
    client.post(reverse("web:token"), {"action": "rotate"})
    key = client.get(reverse("web:profile")).context["token"].key
    api = client.__class__()
    assert api.get(reverse("api:wallet"), HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    client.post(reverse("web:token"), {"action": "rotate"})
    assert api.get(reverse("api:wallet"), HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    client.post(reverse("web:token"), {"action": "revoke"})
    assert client.get(reverse("web:profile")).context["token"] is None


def test_csrf_is_enforced_on_pages(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("web:fund"), {"meter": "X", "amount": "1"}).status_code == 403
    assert client.post(reverse("web:logout")).status_code == 403
