"""Forms of the pages: they parse text into integers (µk) and say clearly
what is wrong; they never move money (the views call the services)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from utility.lib.money import coins_to_uk

from .ratelimit import LoginLocked, client_address, login_check

# Far above any wallet; keeps a typo from reaching the database as an overflow.
MAX_COINS_UK = 10**15


def coins_parse(text: str) -> int:
    """``"2.5"`` → 2,500,000 µk, or a ``ValidationError`` that says why not."""
    text = (text or "").strip().replace(",", "")
    if not text:
        raise ValidationError("Enter an amount of coins, e.g. 2.5.")
    try:
        amount_uk = coins_to_uk(text)
    except ValueError as exc:
        if "precise" in str(exc):
            raise ValidationError("Use at most 6 decimals (1 µk is the smallest amount).") from exc
        raise ValidationError(f"“{text}” is not an amount of coins; write it like 2.5.") from exc
    if amount_uk <= 0:
        raise ValidationError("The amount must be more than zero.")
    if amount_uk > MAX_COINS_UK:
        raise ValidationError("That amount is too large.")
    return amount_uk


class CoinsField(forms.CharField):
    """An amount in coins, cleaned to integer µk."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 30)
        super().__init__(**kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": "e.g. 2.5"})

    def clean(self, value):
        return coins_parse(super().clean(value))


class RateLimitedLoginMixin:
    """Refuse, with a clear message, before checking the password while the
    username or the address is locked out (``web.ratelimit``)."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        try:
            login_check(username, client_address(self.request))
        except LoginLocked as exc:
            raise ValidationError(str(exc), code="locked") from exc
        return super().clean()


class LoginForm(RateLimitedLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(RateLimitedLoginMixin, AdminAuthenticationForm):
    pass


class SignUpForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    email = forms.EmailField(help_text="For password resets.")
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise ValidationError("That username is taken.")
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ProfileForm(forms.Form):
    email = forms.EmailField()
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)


class MeterSearchForm(forms.Form):
    q = forms.CharField(max_length=120, required=False, label="Meter id or label")


class FundForm(forms.Form):
    """Step 1: which meter and how much. Step 2 (``confirm``) repeats the
    values with a request id, so a double click or a reload moves coins once."""

    meter = forms.CharField(max_length=40, label="Meter id")
    amount = CoinsField(label="Amount (coins)")
    request_id = forms.CharField(max_length=100, required=False, widget=forms.HiddenInput)

    def clean_request_id(self) -> str:
        value = self.cleaned_data.get("request_id") or ""
        if value:
            try:
                uuid.UUID(value)
            except ValueError as exc:
                raise ValidationError("This form is out of date; please start again.") from exc
        return value
