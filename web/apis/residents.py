"""The residents' API: wallet, meters, readings, settlements, funding,
top-ups and withdrawals. Each view: an input (or filter) serializer, one
service or selector call, an output serializer. A resident reaches only their
own wallet and meters; a public meter shows its id, label, kind and balance;
anyone else's meter is not found (though it can be funded by its id)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from meters.funding import meter_fund
from meters.reports import (
    Access,
    MeterAccess,
    meter_access,
    meter_decisions,
    meter_readings,
    meters_of_owner,
    meters_public_search,
)
from settlement.reports import lines_of_meters
from utility import clock
from utility.payments.selectors import (
    coin_price_for,
    topup_for,
    topups_for,
    wallet_balance_uk,
    wallet_freeze_reason,
    withdrawal_for,
    withdrawals_for,
)
from utility.payments.services import topup_create, withdrawal_request

from ..forms import MAX_COINS_UK
from ..presenters import meter_cards
from .pagination import get_paginated_response
from .serializers import (
    DecisionOut,
    ErrorOut,
    LineOut,
    MeterOut,
    MeterPublicOut,
    ReadingOut,
    TopUpOut,
    WithdrawalOut,
)
from .throttles import MoneyThrottle

ERRORS = {code: OpenApiResponse(ErrorOut) for code in (400, 401, 403, 404, 429)}
MeterDetail = PolymorphicProxySerializer(
    component_name="MeterDetail", serializers=[MeterOut, MeterPublicOut], resource_type_field_name=None
)


def meter_visible(request, public_id: str, *, history: bool = False) -> MeterAccess:
    """The meter if the caller may see it (its history: only the owner or
    staff); else 404 (someone else's private meter) or 403 (a public one)."""
    found = meter_access(public_id, request.user)
    if found is None or found.access == Access.FUND_ONLY:
        raise NotFound("No meter has that id.")
    if history and not found.full:
        raise PermissionDenied("Only the meter's owner sees its history.")
    return found


def meter_out(found: MeterAccess) -> dict:
    if found.full:
        return MeterOut(meter_cards([found.meter], clock.now())[0]).data
    return MeterPublicOut(found.meter).data


class WalletApi(APIView):
    class OutputSerializer(serializers.Serializer):
        balance_uk = serializers.IntegerField()
        frozen_reason = serializers.CharField(allow_null=True)
        coin_price_cents = serializers.IntegerField(allow_null=True)
        currency = serializers.CharField(allow_null=True)

    @extend_schema(responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        price = coin_price_for(request.user)
        data = {
            "balance_uk": wallet_balance_uk(request.user),
            "frozen_reason": wallet_freeze_reason(request.user),
            "coin_price_cents": price.coin_price_cents if price else None,
            "currency": price.currency if price else None,
        }
        return Response(self.OutputSerializer(data).data)


class MeterListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=["consumer", "producer", "prosumer"], required=False)
        state = serializers.ChoiceField(choices=["connected", "disconnected", "low"], required=False)

    @extend_schema(parameters=[FilterSerializer], responses={200: MeterOut(many=True), **ERRORS})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        meters = meters_of_owner(request.user)
        if kind := filters.validated_data.get("kind"):
            meters = meters.filter(kind=kind)
        cards = meter_cards(list(meters), clock.now())
        if state := filters.validated_data.get("state"):
            cards = [card for card in cards if card.state == state]
        return get_paginated_response(serializer_class=MeterOut, queryset=cards, request=request, view=self)


class MeterDetailApi(APIView):
    @extend_schema(responses={200: MeterDetail, **ERRORS})
    def get(self, request, public_id: str):
        return Response(meter_out(meter_visible(request, public_id)))


class WindowFilter(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="interval start ≥ this (UTC)")
    until = serializers.DateTimeField(required=False, help_text="interval start < this (UTC)")


class MeterReadingsApi(APIView):
    @extend_schema(parameters=[WindowFilter], responses={200: ReadingOut(many=True), **ERRORS})
    def get(self, request, public_id: str):
        found = meter_visible(request, public_id, history=True)
        filters = WindowFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        readings = meter_readings(found.meter.pk, **filters.validated_data)
        return get_paginated_response(serializer_class=ReadingOut, queryset=readings, request=request, view=self)


class MeterSettlementsApi(APIView):
    @extend_schema(parameters=[WindowFilter], responses={200: LineOut(many=True), **ERRORS})
    def get(self, request, public_id: str):
        found = meter_visible(request, public_id, history=True)
        filters = WindowFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        lines = lines_of_meters([found.meter.pk], filters.validated_data)
        return get_paginated_response(serializer_class=LineOut, queryset=lines, request=request, view=self)


class MeterDecisionsApi(APIView):
    @extend_schema(responses={200: DecisionOut(many=True), **ERRORS})
    def get(self, request, public_id: str):
        found = meter_visible(request, public_id, history=True)
        decisions = meter_decisions(found.meter.pk)
        return get_paginated_response(serializer_class=DecisionOut, queryset=decisions, request=request, view=self)


class MeterFundApi(APIView):
    """Move coins from the caller's own wallet to any active meter, once per
    ``request_id`` (a retry answers 200 and moves nothing)."""

    throttle_classes = [MoneyThrottle]

    class InputSerializer(serializers.Serializer):
        amount_uk = serializers.IntegerField(min_value=1, max_value=MAX_COINS_UK)
        request_id = serializers.CharField(max_length=100, help_text="your id for this funding: retries are safe")

    class OutputSerializer(serializers.Serializer):
        meter = serializers.CharField()
        amount_uk = serializers.IntegerField()
        created = serializers.BooleanField(help_text="false: this request id was already applied")
        debt_paid_uk = serializers.IntegerField()
        meter_now = MeterDetail

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer, **ERRORS})
    def post(self, request, public_id: str):
        found = meter_access(public_id, request.user)
        if found is None:
            raise NotFound("No meter has that id.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        funded = meter_fund(
            request.user, found.meter, data.validated_data["amount_uk"], data.validated_data["request_id"]
        )
        body = {
            "meter": found.meter.public_id,
            "amount_uk": data.validated_data["amount_uk"],
            "created": funded.created,
            "debt_paid_uk": funded.debt_paid_uk,
            # Read again: the balance moved (and a decision may have followed).
            "meter_now": meter_out(meter_access(public_id, request.user)) if found.shows_balance else None,
        }
        return Response(body, status=status.HTTP_201_CREATED if funded.created else status.HTTP_200_OK)


class PublicMeterListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        search = serializers.CharField(required=False, max_length=120, help_text="part of the id or label")

    @extend_schema(parameters=[FilterSerializer], responses={200: MeterPublicOut(many=True), **ERRORS})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        meters = meters_public_search(filters.validated_data.get("search", ""), limit=500)
        return get_paginated_response(serializer_class=MeterPublicOut, queryset=meters, request=request, view=self)


class SettlementListApi(APIView):
    """Every settlement line that touched one of the caller's meters."""

    class FilterSerializer(WindowFilter):
        meter = serializers.CharField(required=False, max_length=40)

    @extend_schema(parameters=[FilterSerializer], responses={200: LineOut(many=True), **ERRORS})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        own = list(meters_of_owner(request.user).values_list("pk", flat=True))
        lines = lines_of_meters(own, filters.validated_data)
        return get_paginated_response(serializer_class=LineOut, queryset=lines, request=request, view=self)


class TopUpListApi(APIView):
    """Buy coins: POST opens a checkout (pay at ``checkout_url``); the coins
    arrive when the payment's webhook does."""

    throttle_classes = [MoneyThrottle]

    class InputSerializer(serializers.Serializer):
        amount_cents = serializers.IntegerField(min_value=1, max_value=10**9)
        expected_coins_uk = serializers.IntegerField(
            required=False, min_value=0, max_value=10**18, help_text="the coins you were quoted; refused if changed"
        )

    @extend_schema(responses={200: TopUpOut(many=True), **ERRORS})
    def get(self, request):
        return get_paginated_response(
            serializer_class=TopUpOut, queryset=topups_for(request.user), request=request, view=self
        )

    @extend_schema(request=InputSerializer, responses={201: TopUpOut, **ERRORS})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        topup = topup_create(request.user, now=clock.now(), **data.validated_data)
        return Response(TopUpOut(topup).data, status=status.HTTP_201_CREATED)


class TopUpDetailApi(APIView):
    @extend_schema(responses={200: TopUpOut, **ERRORS})
    def get(self, request, topup_id: str):
        topup = topup_for(request.user, topup_id)
        if topup is None:
            raise NotFound("No top-up of yours has that id.")
        return Response(TopUpOut(topup).data)


class WithdrawalListApi(APIView):
    """Withdraw coins as money to your connected bank account (producers)."""

    throttle_classes = [MoneyThrottle]

    class InputSerializer(serializers.Serializer):
        amount_uk = serializers.IntegerField(min_value=1, max_value=MAX_COINS_UK)
        request_id = serializers.CharField(max_length=100, help_text="your id for this withdrawal: retries are safe")

    @extend_schema(responses={200: WithdrawalOut(many=True), **ERRORS})
    def get(self, request):
        return get_paginated_response(
            serializer_class=WithdrawalOut, queryset=withdrawals_for(request.user), request=request, view=self
        )

    @extend_schema(request=InputSerializer, responses={201: WithdrawalOut, **ERRORS})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        withdrawal = withdrawal_request(request.user, now=clock.now(), **data.validated_data)
        return Response(WithdrawalOut(withdrawal).data, status=status.HTTP_201_CREATED)


class WithdrawalDetailApi(APIView):
    @extend_schema(responses={200: WithdrawalOut, **ERRORS})
    def get(self, request, withdrawal_id: str):
        withdrawal = withdrawal_for(request.user, withdrawal_id)
        if withdrawal is None:
            raise NotFound("No withdrawal of yours has that id.")
        return Response(WithdrawalOut(withdrawal).data)
