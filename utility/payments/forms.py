"""Input forms of the resident pages: parse text into integer cents and µk."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from utility.lib.money import coins_to_uk


class TopUpForm(forms.Form):
    """An amount of money, two decimals (the currency's cents)."""

    amount = forms.DecimalField(min_value=Decimal("0.01"), max_digits=9, decimal_places=2)
    expected_coins_uk = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def amount_cents(self) -> int:
        return int(self.cleaned_data["amount"] * 100)


class WithdrawalForm(forms.Form):
    """An amount of coins, up to six decimals (whole µk)."""

    coins = forms.DecimalField(min_value=Decimal("0.000001"), max_digits=15, decimal_places=6)
    request_id = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def amount_uk(self) -> int:
        return coins_to_uk(str(self.cleaned_data["coins"]))
