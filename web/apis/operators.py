"""The operators' API (staff only): grids and their rules, meters (register
with credentials shown once, rotate the secret, change flags, force on or
off), settlements and alerts. Every change is recorded in the audit log by the
service it calls (``meters.operator``, ``meters.supply``)."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from contracts.selectors import mirror_status
from meters.models import DecisionState, MeterKind
from meters.operator import grid_rules_change, meter_register, meter_secret_reissue, meter_settings_change
from meters.reports import grid_for_slug, grids_list, meter_decisions, meter_find, meters_list
from meters.supply import meter_force_state, meter_release, meters_running_out
from settlement.reports import run_get, run_lines, runs_list, runs_stuck, runs_with_alerts
from utility import clock
from utility.payments.selectors import withdrawals_stuck

from .pagination import get_paginated_response
from .permissions import IsStaff
from .serializers import DecisionOut, ErrorOut, GridOut, LineOut, OperatorMeterOut, RunOut

ERRORS = {code: OpenApiResponse(ErrorOut) for code in (400, 401, 403, 404, 429)}
BIG = 10**15  # far above any real rule; the service checks the real ranges


class OperatorApi(APIView):
    permission_classes = [IsStaff]


def _grid(slug: str):
    grid = grid_for_slug(slug)
    if grid is None:
        raise NotFound("No grid has that slug.")
    return grid


def _meter(public_id: str):
    meter = meter_find(public_id)
    if meter is None:
        raise NotFound("No meter has that id.")
    return meter


class GridListApi(OperatorApi):
    @extend_schema(responses={200: GridOut(many=True), **ERRORS})
    def get(self, request):
        return get_paginated_response(serializer_class=GridOut, queryset=grids_list(), request=request, view=self)


class GridDetailApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        tariff_uk_per_kwh = serializers.IntegerField(required=False, min_value=0, max_value=BIG)
        fee_fixed_uk = serializers.IntegerField(required=False, min_value=0, max_value=BIG)
        fee_bp = serializers.IntegerField(required=False, min_value=0, max_value=10_000)
        credit_limit_uk = serializers.IntegerField(required=False, min_value=0, max_value=BIG)
        credit_grace_s = serializers.IntegerField(required=False, min_value=0, max_value=30 * 86_400)
        loss_alert_bp = serializers.IntegerField(required=False, min_value=0, max_value=1_000_000)
        settlement_grace_s = serializers.IntegerField(required=False, min_value=0, max_value=7 * 86_400)
        coin_price_cents = serializers.IntegerField(required=False, min_value=1, max_value=10**9)

    @extend_schema(responses={200: GridOut, **ERRORS})
    def get(self, request, slug: str):
        return Response(GridOut(_grid(slug)).data)

    @extend_schema(request=InputSerializer, responses={200: GridOut, **ERRORS})
    def patch(self, request, slug: str):
        grid = _grid(slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grid = grid_rules_change(grid, dict(data.validated_data), request.user.get_username(), clock.now())
        return Response(GridOut(grid).data)


class MeterFilter(serializers.Serializer):
    grid = serializers.CharField(required=False, max_length=40)
    kind = serializers.ChoiceField(choices=MeterKind.values, required=False)
    supply_state = serializers.ChoiceField(choices=DecisionState.values, required=False)
    public = serializers.BooleanField(required=False, allow_null=True, default=None)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)
    never_disconnect = serializers.BooleanField(required=False, allow_null=True, default=None)
    owner = serializers.CharField(required=False, max_length=150)
    search = serializers.CharField(required=False, max_length=120)


class MeterListApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        grid = serializers.CharField(max_length=40)
        public_id = serializers.CharField(max_length=40)
        kind = serializers.ChoiceField(choices=MeterKind.values)
        label = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
        owner = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
        public = serializers.BooleanField(required=False, default=False)
        never_disconnect = serializers.BooleanField(required=False, default=False)

    class CreatedSerializer(OperatorMeterOut):
        secret = serializers.CharField(help_text="shown once, never again: configure the meter with it now")

    @extend_schema(parameters=[MeterFilter], responses={200: OperatorMeterOut(many=True), **ERRORS})
    def get(self, request):
        filters = MeterFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        meters = meters_list(filters.validated_data)
        return get_paginated_response(serializer_class=OperatorMeterOut, queryset=meters, request=request, view=self)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer, **ERRORS})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        grid = _grid(values.pop("grid"))
        issued = meter_register(
            grid,
            values.pop("public_id"),
            values.pop("kind"),
            request.user.get_username(),
            clock.now(),
            owner_username=values.pop("owner") or None,
            **values,
        )
        body = {**OperatorMeterOut(meter_find(issued.meter.public_id)).data, "secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class MeterDetailApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        label = serializers.CharField(max_length=120, required=False, allow_blank=True)
        owner = serializers.CharField(max_length=150, required=False, allow_blank=True, help_text="'' for none")
        public = serializers.BooleanField(required=False)
        never_disconnect = serializers.BooleanField(required=False)
        active = serializers.BooleanField(required=False)
        reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    @extend_schema(responses={200: OperatorMeterOut, **ERRORS})
    def get(self, request, public_id: str):
        return Response(OperatorMeterOut(_meter(public_id)).data)

    @extend_schema(request=InputSerializer, responses={200: OperatorMeterOut, **ERRORS})
    def patch(self, request, public_id: str):
        meter = _meter(public_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason")
        meter_settings_change(meter, changes, request.user.get_username(), clock.now(), reason)
        return Response(OperatorMeterOut(meter_find(public_id)).data)


class MeterSecretApi(OperatorApi):
    class OutputSerializer(serializers.Serializer):
        public_id = serializers.CharField()
        secret = serializers.CharField(help_text="shown once; the old secret no longer works")

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **ERRORS})
    def post(self, request, public_id: str):
        meter = _meter(public_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        secret = meter_secret_reissue(meter, request.user.get_username(), clock.now(), data.validated_data["reason"])
        return Response({"public_id": meter.public_id, "secret": secret})


class MeterForceApi(OperatorApi):
    """Force a meter on or off; it holds until released."""

    class InputSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=DecisionState.values)
        reason = serializers.CharField(max_length=500)

    @extend_schema(request=InputSerializer, responses={201: DecisionOut, **ERRORS})
    def post(self, request, public_id: str):
        meter = _meter(public_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision = meter_force_state(
            meter, now=clock.now(), operator=request.user.get_username(), **data.validated_data
        )
        return Response(DecisionOut(decision).data, status=status.HTTP_201_CREATED)


class MeterReleaseApi(OperatorApi):
    """End an operator's hold: the automatic rules decide again at once."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500)

    @extend_schema(request=InputSerializer, responses={201: DecisionOut, **ERRORS})
    def post(self, request, public_id: str):
        meter = _meter(public_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meter_release(meter, data.validated_data["reason"], request.user.get_username(), clock.now())
        return Response(DecisionOut(meter_decisions(meter.pk).first()).data, status=status.HTTP_201_CREATED)


class RunFilter(serializers.Serializer):
    grid = serializers.CharField(required=False, max_length=40)
    status = serializers.ChoiceField(choices=["open", "settled"], required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    alerts = serializers.BooleanField(required=False, default=False, help_text="only runs that raised an alert")


class SettlementRunListApi(OperatorApi):
    @extend_schema(parameters=[RunFilter], responses={200: RunOut(many=True), **ERRORS})
    def get(self, request):
        filters = RunFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        runs = runs_list(filters.validated_data)
        return get_paginated_response(serializer_class=RunOut, queryset=runs, request=request, view=self)


class SettlementRunDetailApi(OperatorApi):
    @extend_schema(responses={200: RunOut, **ERRORS})
    def get(self, request, run_id: int):
        run = run_get(run_id)
        if run is None:
            raise NotFound("No settlement has that id.")
        return Response(RunOut(run).data)


class SettlementRunLinesApi(OperatorApi):
    @extend_schema(responses={200: LineOut(many=True), **ERRORS})
    def get(self, request, run_id: int):
        if run_get(run_id) is None:
            raise NotFound("No settlement has that id.")
        lines = run_lines(run_id).select_related("run__grid")
        return get_paginated_response(serializer_class=LineOut, queryset=lines, request=request, view=self)


class AlertsApi(OperatorApi):
    """What needs an operator now: settlement alerts (loss above the grid's
    threshold, import above export) of the last ``hours``, meters running out
    within a day, settlement behind, stuck withdrawals, the chain mirror's lag."""

    class FilterSerializer(serializers.Serializer):
        hours = serializers.IntegerField(required=False, default=48, min_value=1, max_value=24 * 90)

    class RunningOutSerializer(serializers.Serializer):
        meter = serializers.CharField(source="public_id")
        state = serializers.CharField()
        balance_uk = serializers.IntegerField()
        avg_cost_uk = serializers.IntegerField()
        seconds_left = serializers.IntegerField(allow_null=True)

    class OutputSerializer(serializers.Serializer):
        settlement_alerts = RunOut(many=True)
        running_out = serializers.ListField(child=serializers.DictField())
        settlement_behind = serializers.ListField(child=serializers.DictField())
        stuck_withdrawals = serializers.ListField(child=serializers.DictField())
        mirror = serializers.DictField()

    @extend_schema(parameters=[FilterSerializer], responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        now = clock.now()
        running_out = []
        for grid in grids_list():
            for forecast in meters_running_out(grid, 24, now=now)[:200]:
                row = self.RunningOutSerializer(forecast).data
                running_out.append({**row, "grid": grid.slug})
        mirror = mirror_status()
        body = {
            "settlement_alerts": RunOut(
                runs_with_alerts(now - timedelta(hours=filters.validated_data["hours"]))[:200], many=True
            ).data,
            "running_out": running_out,
            "settlement_behind": [{"grid": g.slug, "settled_through": t} for g, t in runs_stuck(now)],
            "stuck_withdrawals": [
                {"id": str(w.pk), "user": w.user.get_username(), "status": w.status, "updated_at": w.updated_at}
                for w in withdrawals_stuck(now)[:200]
            ],
            "mirror": {
                "reachable": mirror.reachable,
                "lag_s": mirror.lag_s,
                "batches_pending": mirror.batches_pending,
                "batches_failed": mirror.batches_failed,
                "error": mirror.error,
            },
        }
        return Response(body)
