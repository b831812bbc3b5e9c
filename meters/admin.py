"""Grids, meters and what they reported, in the admin.

Every operator action goes through a service that records it in the audit
log (``meters.operator``, ``meters.supply``): a grid's rules, a meter's
flags, registering a meter (its secret is shown once, on the page that
follows), rotating its secret, forcing it on or off with a reason, and
releasing the hold. Grids are created with ``manage.py grid_create`` (which
opens their accounts). Readings, rejections and decisions are records:
read-only, with search and filters.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from utility.ledger.admin import ReadOnlyModelAdmin
from utility.lib.money import format_uk

from .models import DecisionState, Grid, Meter, MeterDecision, MeterKind, Reading, RejectedReading
from .operator import grid_rules_change, meter_register, meter_secret_reissue, meter_settings_change
from .services import GRID_RULE_FIELDS, grid_rules_check
from .supply import SupplyError, meter_force_state, meter_release


class GridAdminForm(forms.ModelForm):
    class Meta:
        model = Grid
        fields = ("name", *(name for name in GRID_RULE_FIELDS if name != "interval_s"), "currency")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Added after the other rules: a form that leaves it out keeps the grid's value.
        self.fields["credit_grace_s"].required = False

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("credit_grace_s") is None:
            cleaned["credit_grace_s"] = self.instance.credit_grace_s
        rules = {name: cleaned[name] for name in GRID_RULE_FIELDS if cleaned.get(name) is not None}
        try:
            # The same checks as grid_create (fee_bp <= 10000, ...), as field errors.
            grid_rules_check(rules)
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


@admin.register(Grid)
class GridAdmin(admin.ModelAdmin):
    form = GridAdminForm
    list_display = (
        "slug",
        "name",
        "interval_s",
        "tariff_uk_per_kwh",
        "fee_fixed_uk",
        "fee_bp",
        "credit_limit_uk",
        "credit_grace_s",
        "settled_through",
    )
    search_fields = ("slug", "name")
    readonly_fields = (
        "slug",
        "interval_s",
        "started_at",
        "settled_through",
        "pool_account",
        "fee_account",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # manage.py grid_create opens the grid's accounts

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Grid, form, change: bool) -> None:
        """Rules through ``grid_rules_change`` (recorded, old and new values);
        the name and currency are plain labels."""
        rules = {name: form.cleaned_data[name] for name in form.changed_data if name in GRID_RULE_FIELDS}
        labels = [name for name in form.changed_data if name in ("name", "currency")]
        if labels:
            Grid.objects.filter(pk=obj.pk).update(**{name: form.cleaned_data[name] for name in labels})
        if rules:
            current = Grid.objects.get(pk=obj.pk)
            grid_rules_change(current, rules, request.user.get_username(), timezone.now())


class MeterAdminForm(forms.ModelForm):
    reason = forms.CharField(
        max_length=500, required=False, help_text="Why (recorded in the audit log with the change)"
    )

    class Meta:
        model = Meter
        fields = ("label", "owner", "public", "never_disconnect", "active")


class MeterRegisterForm(forms.Form):
    """Register a meter: its credentials are shown once, on the next page."""

    grid = forms.ModelChoiceField(queryset=Grid.objects.order_by("slug"))
    public_id = forms.CharField(max_length=40, label="Meter id", help_text="Also its MQTT username")
    kind = forms.ChoiceField(choices=MeterKind.choices)
    label = forms.CharField(max_length=120, required=False)
    owner = forms.CharField(max_length=150, required=False, help_text="The resident's username (optional)")
    public = forms.BooleanField(required=False, help_text="A street light: its balance is visible to all")
    never_disconnect = forms.BooleanField(required=False, help_text="A clinic or a street light: never cut")


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


FORCE_ACTIONS = {
    "connect": ("Force connect", DecisionState.CONNECT),
    "disconnect": ("Force disconnect", DecisionState.DISCONNECT),
    "release": ("Release the operator's hold", None),
}


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    form = MeterAdminForm
    list_display = ("public_id", "grid", "kind", "owner", "public", "active", "supply_state", "balance", "last_seen_at")
    list_filter = ("grid", "kind", "public", "active", "never_disconnect", "supply_state")
    search_fields = ("public_id", "label", "owner__username")
    list_select_related = ("grid", "owner", "account")
    raw_id_fields = ("owner",)
    readonly_fields = (
        "public_id",
        "grid",
        "kind",
        "account",
        "last_seq",
        "last_interval_start",
        "last_import_total_wh",
        "last_export_total_wh",
        "last_seen_at",
        "decision_seq",
        "supply_state",
        "created_at",
        "operator_actions",
    )
    fieldsets = (
        (None, {"fields": ("public_id", "grid", "kind", "account", "operator_actions")}),
        ("Settings", {"fields": ("label", "owner", "public", "never_disconnect", "active", "reason")}),
        (
            "State",
            {
                "fields": (
                    "supply_state",
                    "decision_seq",
                    "last_seq",
                    "last_interval_start",
                    "last_import_total_wh",
                    "last_export_total_wh",
                    "last_seen_at",
                    "created_at",
                )
            },
        ),
    )
    actions = ("force_disconnect", "force_connect", "release_hold")

    @admin.display(description="balance (k)", ordering="account__balance_uk")
    def balance(self, meter: Meter) -> str:
        return format_uk(meter.account.balance_uk)

    @admin.display(description="Act")
    def operator_actions(self, meter: Meter) -> str:
        links = [
            (reverse("admin:meters_meter_force", args=[meter.pk, name]), label)
            for name, (label, _state) in FORCE_ACTIONS.items()
        ]
        links.append((reverse("admin:meters_meter_rotate", args=[meter.pk]), "Rotate the secret"))
        return format_html(
            " · ".join(['<a class="button" href="{}">{}</a>'] * len(links)), *(v for pair in links for v in pair)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("register/", view(self.register_view), name="meters_meter_register"),
            path("<int:pk>/force/<str:what>/", view(self.force_view), name="meters_meter_force"),
            path("<int:pk>/rotate-secret/", view(self.rotate_view), name="meters_meter_rotate"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:meters_meter_register"))

    def save_model(self, request: HttpRequest, obj: Meter, form, change: bool) -> None:
        """Flags and owner through ``meter_settings_change`` (recorded)."""
        changes = {
            name: (form.cleaned_data[name].get_username() if form.cleaned_data[name] else "")
            if name == "owner"
            else form.cleaned_data[name]
            for name in form.changed_data
            if name != "reason"
        }
        if changes:
            meter = Meter.objects.get(pk=obj.pk)
            reason = form.cleaned_data.get("reason", "")
            meter_settings_change(meter, changes, request.user.get_username(), timezone.now(), reason)

    def _page(self, request: HttpRequest, template: str, context: dict) -> TemplateResponse:
        base = {**self.admin_site.each_context(request), "opts": self.model._meta}
        return TemplateResponse(request, f"admin/meters/meter/{template}", {**base, **context})

    def register_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        form = MeterRegisterForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = meter_register(
                    data["grid"],
                    data["public_id"],
                    data["kind"],
                    request.user.get_username(),
                    timezone.now(),
                    public=data["public"],
                    label=data["label"],
                    owner_username=data["owner"] or None,
                    never_disconnect=data["never_disconnect"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                # Rendered, not redirected: the secret is in no URL, session or log.
                return self._page(
                    request,
                    "credentials.html",
                    {
                        "meter": issued.meter,
                        "secret": issued.secret,
                        "title": f"Meter {issued.meter.public_id} registered",
                    },
                )
        return self._page(request, "register.html", {"form": form, "title": "Register a meter"})

    def rotate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        meter = get_object_or_404(Meter, pk=pk)
        if not self.has_change_permission(request, meter):
            return HttpResponseRedirect(reverse("admin:index"))
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            secret = meter_secret_reissue(
                meter, request.user.get_username(), timezone.now(), form.cleaned_data["reason"]
            )
            return self._page(
                request,
                "credentials.html",
                {"meter": meter, "secret": secret, "title": f"New secret for {meter.public_id}"},
            )
        context = {
            "form": form,
            "meter": meter,
            "title": f"Rotate the secret of {meter.public_id}",
            "warning": "The meter's current secret stops working at once.",
        }
        return self._page(request, "reason.html", context)

    def force_view(self, request: HttpRequest, pk: int, what: str) -> HttpResponse:
        meter = get_object_or_404(Meter, pk=pk)
        if what not in FORCE_ACTIONS or not self.has_change_permission(request, meter):
            return HttpResponseRedirect(reverse("admin:meters_meter_changelist"))
        label, state = FORCE_ACTIONS[what]
        form = ReasonForm(request.POST or None)
        if (
            request.method == "POST"
            and form.is_valid()
            and self._force(request, [meter], state, form.cleaned_data["reason"])
        ):
            return HttpResponseRedirect(reverse("admin:meters_meter_change", args=[meter.pk]))
        context = {"form": form, "meter": meter, "title": f"{label}: {meter.public_id}"}
        return self._page(request, "reason.html", context)

    def _force(self, request: HttpRequest, meters: list[Meter], state: str | None, reason: str) -> bool:
        """Force (or release, ``state`` None) each meter; a message per outcome."""
        operator, done = request.user.get_username(), 0
        for meter in meters:
            try:
                if state is None:
                    meter_release(meter, reason, operator, timezone.now())
                else:
                    meter_force_state(meter, state, reason, operator, timezone.now())
                done += 1
            except SupplyError as exc:
                self.message_user(request, f"{meter.public_id}: {exc}", messages.ERROR)
        if done:
            what = "released" if state is None else f"told to {state}"
            self.message_user(request, f"{done} meter(s) {what}; recorded.", messages.SUCCESS)
        return done == len(meters)

    def _bulk_force(self, request: HttpRequest, queryset: QuerySet[Meter], what: str):
        """An action with an intermediate page that asks for the reason."""
        label, state = FORCE_ACTIONS[what]
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._force(request, list(queryset), state, form.cleaned_data["reason"])
            return None
        context = {
            "form": form,
            "meters": list(queryset),
            "action": request.POST.get("action"),
            "title": f"{label}: {queryset.count()} meter(s)",
        }
        return self._page(request, "reason.html", context)

    @admin.action(description="Force disconnect (asks for a reason)")
    def force_disconnect(self, request: HttpRequest, queryset: QuerySet[Meter]):
        return self._bulk_force(request, queryset, "disconnect")

    @admin.action(description="Force connect (asks for a reason)")
    def force_connect(self, request: HttpRequest, queryset: QuerySet[Meter]):
        return self._bulk_force(request, queryset, "connect")

    @admin.action(description="Release the operator's hold (asks for a reason)")
    def release_hold(self, request: HttpRequest, queryset: QuerySet[Meter]):
        return self._bulk_force(request, queryset, "release")


@admin.register(Reading)
class ReadingAdmin(ReadOnlyModelAdmin):
    list_display = ("meter", "interval_start", "import_wh", "export_wh", "seq", "received_at", "late", "settled_in")
    list_filter = ("late", "meter__grid")
    search_fields = ("meter__public_id",)
    list_select_related = ("meter",)
    date_hierarchy = "interval_start"
    show_full_result_count = False


@admin.register(RejectedReading)
class RejectedReadingAdmin(ReadOnlyModelAdmin):
    list_display = ("received_at", "reason", "grid_slug", "meter_public_id", "seq", "detail")
    list_filter = ("reason", "grid_slug")
    search_fields = ("meter_public_id", "topic", "detail")
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(MeterDecision)
class MeterDecisionAdmin(ReadOnlyModelAdmin):
    list_display = ("meter", "seq", "state", "reason", "balance_uk", "issued_at", "issued_by", "published")
    list_filter = ("state", "reason", "published", "issued_by")
    search_fields = ("meter__public_id", "reason", "issued_by")
    list_select_related = ("meter",)
    date_hierarchy = "issued_at"
