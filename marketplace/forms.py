"""Forms of the market pages: they parse what people type (kWh, coins,
volts, percent, UTC times) into the integers the services take (Wh, µk, dV,
basis points) and say clearly what is wrong. They never move coins: the
views hand the cleaned values to one service call."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError

from meters.models import Meter

from .services.common import BUYING_KINDS, SELLING_KINDS

MAX_INTERVALS = 744  # a month of hours


def _decimal(text: str, unit: str, example: str) -> Decimal:
    text = (text or "").strip().replace(",", "")
    if not text:
        raise ValidationError(f"Enter an amount in {unit}, e.g. {example}.")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValidationError(f"“{text}” is not a number of {unit}; write it like {example}.") from exc
    if not value.is_finite():
        raise ValidationError(f"“{text}” is not a number of {unit}.")
    return value


def scaled(text: str, factor: int, unit: str, example: str, *, allow_zero: bool = False) -> int:
    """``text`` in ``unit`` times ``factor`` as an exact integer (no rounding)."""
    value = _decimal(text, unit, example) * factor
    if value != value.to_integral_value():
        raise ValidationError(f"Too precise: use at most {len(str(factor)) - 1} decimals of {unit}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError("The amount must be more than zero." if not allow_zero else "It cannot be negative.")
    if value > 10**15:
        raise ValidationError("That amount is too large.")
    return int(value)


class ScaledField(forms.CharField):
    """A decimal in a display unit, cleaned to an integer in the base unit."""

    def __init__(self, *, factor: int, unit: str, example: str, allow_zero: bool = False, **kwargs) -> None:
        self.factor, self.unit, self.example, self.allow_zero = factor, unit, example, allow_zero
        kwargs.setdefault("max_length", 30)
        super().__init__(**kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": f"e.g. {example}"})

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return None
        return scaled(value, self.factor, self.unit, self.example, allow_zero=self.allow_zero)


def kwh_field(label: str, **kwargs) -> ScaledField:
    return ScaledField(factor=1000, unit="kWh", example="2.5", label=label, **kwargs)


def coins_field(label: str, **kwargs) -> ScaledField:
    return ScaledField(factor=1_000_000, unit="coins", example="0.8", label=label, **kwargs)


def volts_field(label: str, **kwargs) -> ScaledField:
    return ScaledField(factor=10, unit="volts", example="230", label=label, **kwargs)


class UtcDateTimeField(forms.DateTimeField):
    """A time typed as UTC (the grid's clock, ``TIME_ZONE``), e.g. ``2026-01-01 14:00``."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("help_text", "UTC, on the grid's interval boundaries")
        super().__init__(**kwargs)


class _MeterForm(forms.Form):
    meter = forms.ModelChoiceField(queryset=Meter.objects.none(), to_field_name="public_id", empty_label=None)

    def __init__(self, *args, user, selling: bool, grid=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        meters = Meter.objects.filter(
            owner_id=user.pk, active=True, kind__in=SELLING_KINDS if selling else BUYING_KINDS
        )
        if grid is not None:
            meters = meters.filter(grid=grid)
        self.fields["meter"].queryset = meters.order_by("public_id")
        self.fields["meter"].label = "Your meter that delivers" if selling else "Your meter that receives"


class _WindowMixin(forms.Form):
    start = UtcDateTimeField(label="Delivery starts")
    intervals = forms.IntegerField(label="For how many intervals", min_value=1, max_value=MAX_INTERVALS, initial=2)

    def window(self, interval_s: int):
        start = self.cleaned_data["start"]
        return start, start + timedelta(seconds=interval_s * self.cleaned_data["intervals"])


class OfferForm(_WindowMixin, _MeterForm):
    energy = kwh_field("Energy offered (kWh)")
    start_price = coins_field("Start price (coins per kWh)")
    reserve_price = coins_field("Reserve price (coins per kWh, optional)", required=False)
    runs_minutes = forms.IntegerField(
        label="Auction runs for (minutes)", min_value=1, max_value=31 * 24 * 60, initial=30,
        help_text="The highest bid when the timer ends wins; it must end before delivery starts.",
    )  # fmt: skip

    field_order = ["meter", "energy", "start", "intervals", "start_price", "reserve_price", "runs_minutes"]


class BidForm(_MeterForm):
    price = coins_field(
        "Your price (coins per kWh)", help_text="The whole offer at this price is held from your wallet."
    )


class LimitsForm(_MeterForm):
    period_start = UtcDateTimeField(label="Buy from")
    period_end = UtcDateTimeField(label="Buy until")
    max_price = coins_field("Most you pay (coins per kWh)")
    min_payment = coins_field("Smallest payment per interval (coins)", allow_zero=True, initial="0")
    max_payment = coins_field("Largest payment per interval (coins)")
    max_deposit = coins_field("Largest initial deposit (coins)", allow_zero=True)
    v_min = volts_field("Lowest voltage (V)", initial="207")
    v_max = volts_field("Highest voltage (V)", initial="253")
    tolerance = ScaledField(
        factor=100, unit="%", example="5", label="Dual-metering tolerance (%)", initial="5", allow_zero=True,
        help_text="How far the seller's meter may read below yours before you stop paying.",
    )  # fmt: skip


class BilateralOfferForm(_WindowMixin, _MeterForm):
    price = coins_field("Price (coins per kWh)")
    energy_per_interval = kwh_field("Energy each interval (kWh)")
    deposit = coins_field("Initial deposit (coins)", help_text="At least one interval's payment.")
    v_min = volts_field("Lowest voltage you promise (V, optional)", required=False)
    v_max = volts_field("Highest voltage you promise (V, optional)", required=False)

    field_order = ["meter", "price", "energy_per_interval", "start", "intervals", "deposit", "v_min", "v_max"]
