"""The market's REST API under ``/api/market/``: each view is an input
serializer, one service or selector call, an output serializer. Money in
integer µk (``*_uk``), prices in µk per kWh, energy in Wh, voltages in dV,
times ISO 8601 UTC. A refused action is a 400 with the service's reason
(``MarketError`` is a ``ResidentError``: the project's API error handler)
and changes nothing; an offer outside a buyer's limits also lists each
broken limit (``violations``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from meters.models import Grid, Meter
from utility import clock

from . import selectors
from .services import (
    OfferRefused,
    bid_cancel,
    bid_place,
    bilateral_offer,
    deposit_pay,
    limits_publish,
    limits_withdraw,
    offer_cancel,
    offer_create,
)
from .services.common import DEFAULT_TOLERANCE_BP, DEFAULT_V_MAX_DV, DEFAULT_V_MIN_DV

LIST_LIMIT = 200


class MoneyThrottle(UserRateThrottle):
    """Moving coins: the project's tighter ``money`` rate."""

    scope = "money"


class IsStaff(BasePermission):
    message = "Operators only (staff accounts)."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def meter_named(public_id: str) -> Meter:
    """The meter with this public id (the services check whose it is)."""
    meter = Meter.objects.filter(public_id=public_id).first()
    if meter is None:
        raise ValidationError({"meter": [f"No meter has the id “{public_id}”."]})
    return meter


def grid_named(request) -> Grid | None:
    slug = request.query_params.get("grid")
    if slug is None:
        return None
    grid = Grid.objects.filter(slug=slug).first()
    if grid is None:
        raise NotFound("No grid has that slug.")
    return grid


# -- output ---------------------------------------------------------------------


class BidOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    offer = serializers.IntegerField(source="offer_id")
    meter = serializers.CharField(source="buyer_meter.public_id")
    price_uk_per_kwh = serializers.IntegerField()
    amount_uk = serializers.IntegerField(help_text="held while the bid stands")
    status = serializers.CharField()
    placed_at = serializers.DateTimeField()
    released_at = serializers.DateTimeField(allow_null=True)


class OfferOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    grid = serializers.CharField(source="grid.slug")
    meter = serializers.CharField(source="seller_meter.public_id")
    energy_wh = serializers.IntegerField()
    delivery_start = serializers.DateTimeField()
    delivery_end = serializers.DateTimeField()
    start_price_uk_per_kwh = serializers.IntegerField()
    reserve_met = serializers.SerializerMethodField()
    best_bid_uk_per_kwh = serializers.SerializerMethodField()
    ends_at = serializers.DateTimeField()
    status = serializers.CharField()

    def _best(self, offer) -> int | None:
        if hasattr(offer, "best_bid_uk_per_kwh"):
            return offer.best_bid_uk_per_kwh
        best = selectors.best_bid(offer)
        return best.price_uk_per_kwh if best else None

    def get_best_bid_uk_per_kwh(self, offer) -> int | None:
        return self._best(offer)

    def get_reserve_met(self, offer) -> bool:
        """The reserve price itself stays private; only whether the best bid meets it."""
        best = self._best(offer)
        return offer.reserve_price_uk_per_kwh is None or (best is not None and best >= offer.reserve_price_uk_per_kwh)


class LimitOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    grid = serializers.CharField(source="grid.slug")
    meter = serializers.CharField(source="buyer_meter.public_id")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    max_price_uk_per_kwh = serializers.IntegerField()
    min_payment_uk = serializers.IntegerField()
    max_payment_uk = serializers.IntegerField()
    max_deposit_uk = serializers.IntegerField()
    v_min_dv = serializers.IntegerField()
    v_max_dv = serializers.IntegerField()
    tolerance_bp = serializers.IntegerField()
    active = serializers.BooleanField()


class DeliveryOut(serializers.Serializer):
    interval_start = serializers.DateTimeField()
    cap_wh = serializers.IntegerField()
    seller_export_wh = serializers.IntegerField()
    buyer_import_wh = serializers.IntegerField()
    delivered_wh = serializers.IntegerField()
    amount_uk = serializers.IntegerField()
    buyer_v_min_dv = serializers.IntegerField(allow_null=True)
    buyer_v_max_dv = serializers.IntegerField(allow_null=True)
    breach = serializers.CharField()
    payment = serializers.CharField()


class ContractOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    grid = serializers.CharField(source="grid.slug")
    kind = serializers.CharField()
    seller_meter = serializers.CharField(source="seller_meter.public_id")
    buyer_meter = serializers.CharField(source="buyer_meter.public_id")
    price_uk_per_kwh = serializers.IntegerField()
    energy_wh = serializers.IntegerField()
    wh_per_interval = serializers.IntegerField()
    delivery_start = serializers.DateTimeField()
    delivery_end = serializers.DateTimeField()
    deposit_uk = serializers.IntegerField()
    escrow_uk = serializers.IntegerField(source="escrow_account.balance_uk")
    tolerance_bp = serializers.IntegerField(allow_null=True)
    v_min_dv = serializers.IntegerField(allow_null=True)
    v_max_dv = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    delivered_wh = serializers.IntegerField()
    paid_uk = serializers.IntegerField()
    breach = serializers.CharField()
    breach_interval = serializers.DateTimeField(allow_null=True)
    breach_detail = serializers.CharField()
    deliveries = DeliveryOut(many=True, source="deliveries.all")


class PriceOut(serializers.Serializer):
    interval_start = serializers.DateTimeField()
    tariff_uk_per_kwh = serializers.IntegerField()
    market_uk_per_kwh = serializers.IntegerField(allow_null=True)
    market_wh = serializers.IntegerField()
    published = serializers.BooleanField()


# -- offers and bids ----------------------------------------------------------------


class OfferListApi(APIView):
    """GET: open auctions (``?grid=<slug>``). POST: offer energy from one's own producing meter."""

    class InputSerializer(serializers.Serializer):
        meter = serializers.CharField(max_length=40)
        energy_wh = serializers.IntegerField(min_value=1)
        delivery_start = serializers.DateTimeField()
        delivery_end = serializers.DateTimeField()
        start_price_uk_per_kwh = serializers.IntegerField(min_value=1)
        reserve_price_uk_per_kwh = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        ends_at = serializers.DateTimeField(help_text="the auction's end, no later than delivery_start")

    @extend_schema(responses={200: OfferOut(many=True)})
    def get(self, request):
        return Response(OfferOut(selectors.offers_open(grid_named(request))[:LIST_LIMIT], many=True).data)

    @extend_schema(request=InputSerializer, responses={201: OfferOut})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        meter = meter_named(fields.pop("meter"))
        offer = offer_create(request.user, meter, now=clock.now(), **fields)
        return Response(OfferOut(selectors.offer_get(offer.pk)).data, status=status.HTTP_201_CREATED)


class OfferDetailApi(APIView):
    class OutputSerializer(OfferOut):
        bids = BidOut(many=True, source="bids.all")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, offer_id: int):
        offer = selectors.offer_get(offer_id)
        if offer is None:
            raise NotFound("No such offer.")
        return Response(self.OutputSerializer(offer).data)


class OfferBidApi(APIView):
    """Bid for the whole offer: the price times its energy is held from your wallet."""

    throttle_classes = [MoneyThrottle]

    class InputSerializer(serializers.Serializer):
        meter = serializers.CharField(max_length=40, help_text="your meter that receives the energy")
        price_uk_per_kwh = serializers.IntegerField(min_value=1)

    @extend_schema(request=InputSerializer, responses={201: BidOut})
    def post(self, request, offer_id: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meter = meter_named(data.validated_data["meter"])
        bid = bid_place(request.user, offer_id, meter, data.validated_data["price_uk_per_kwh"], clock.now())
        return Response(BidOut(bid).data, status=status.HTTP_201_CREATED)


class OfferCancelApi(APIView):
    @extend_schema(request=None, responses={200: OfferOut})
    def post(self, request, offer_id: int):
        offer = offer_cancel(request.user, offer_id, clock.now())
        return Response(OfferOut(selectors.offer_get(offer.pk)).data)


class BidListApi(APIView):
    @extend_schema(responses={200: BidOut(many=True)})
    def get(self, request):
        return Response(BidOut(selectors.bids_of(request.user)[:LIST_LIMIT], many=True).data)


class BidCancelApi(APIView):
    @extend_schema(request=None, responses={200: BidOut})
    def post(self, request, bid_id: int):
        return Response(BidOut(bid_cancel(request.user, bid_id, clock.now())).data)


# -- bilateral ------------------------------------------------------------------------


class LimitListApi(APIView):
    """GET: buyers' active limits (``?grid=<slug>``). POST: publish your own."""

    class InputSerializer(serializers.Serializer):
        meter = serializers.CharField(max_length=40, help_text="your meter that receives the energy")
        period_start = serializers.DateTimeField()
        period_end = serializers.DateTimeField()
        max_price_uk_per_kwh = serializers.IntegerField(min_value=1)
        min_payment_uk = serializers.IntegerField(min_value=0)
        max_payment_uk = serializers.IntegerField(min_value=1)
        max_deposit_uk = serializers.IntegerField(min_value=0)
        v_min_dv = serializers.IntegerField(min_value=1, default=DEFAULT_V_MIN_DV)
        v_max_dv = serializers.IntegerField(min_value=1, default=DEFAULT_V_MAX_DV)
        tolerance_bp = serializers.IntegerField(min_value=0, max_value=10_000, default=DEFAULT_TOLERANCE_BP)

    @extend_schema(responses={200: LimitOut(many=True)})
    def get(self, request):
        return Response(LimitOut(selectors.limits_open(grid_named(request))[:LIST_LIMIT], many=True).data)

    @extend_schema(request=InputSerializer, responses={201: LimitOut})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        meter = meter_named(fields.pop("meter"))
        limit = limits_publish(request.user, meter, now=clock.now(), **fields)
        return Response(LimitOut(limit).data, status=status.HTTP_201_CREATED)


class LimitWithdrawApi(APIView):
    @extend_schema(request=None, responses={200: LimitOut})
    def post(self, request, limit_id: int):
        return Response(LimitOut(limits_withdraw(request.user, limit_id, clock.now())).data)


class LimitOfferApi(APIView):
    """A seller's offer to the buyer behind these limits: inside all of them it
    is accepted at once (201, the contract); outside, 400 lists ``violations``."""

    throttle_classes = [MoneyThrottle]

    class InputSerializer(serializers.Serializer):
        meter = serializers.CharField(max_length=40, help_text="your meter that delivers")
        price_uk_per_kwh = serializers.IntegerField(min_value=1)
        wh_per_interval = serializers.IntegerField(min_value=1)
        delivery_start = serializers.DateTimeField()
        delivery_end = serializers.DateTimeField()
        deposit_uk = serializers.IntegerField(min_value=0)
        v_min_dv = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        v_max_dv = serializers.IntegerField(min_value=1, required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={201: ContractOut})
    def post(self, request, limit_id: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        meter = meter_named(fields.pop("meter"))
        try:
            contract = bilateral_offer(request.user, meter, limit_id, now=clock.now(), **fields)
        except OfferRefused as refused:
            body = {"status": 400, "code": "outside_limits", "message": str(refused), "violations": refused.violations}
            return Response({"error": body}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ContractOut(selectors.contract_get(contract.pk)).data, status=status.HTTP_201_CREATED)


# -- contracts, prices, operators -----------------------------------------------------


class ContractListApi(APIView):
    @extend_schema(responses={200: ContractOut(many=True)})
    def get(self, request):
        return Response(ContractOut(selectors.contracts_of(request.user)[:LIST_LIMIT], many=True).data)


class ContractDetailApi(APIView):
    @extend_schema(responses={200: ContractOut})
    def get(self, request, contract_id: int):
        contract = selectors.contract_get(contract_id, request.user)
        if contract is None:
            raise NotFound("No such contract.")
        return Response(ContractOut(contract).data)


class ContractDepositApi(APIView):
    """The buyer pays the initial deposit: the contract starts and the meter is switched on."""

    throttle_classes = [MoneyThrottle]

    @extend_schema(request=None, responses={200: ContractOut})
    def post(self, request, contract_id: int):
        contract = deposit_pay(request.user, contract_id, clock.now())
        return Response(ContractOut(selectors.contract_get(contract.pk)).data)


class PriceHistoryApi(APIView):
    """The grid's published prices per interval, oldest first (last 48)."""

    @extend_schema(responses={200: PriceOut(many=True)})
    def get(self, request, slug: str):
        grid = Grid.objects.filter(slug=slug).first()
        if grid is None:
            raise NotFound("No grid has that slug.")
        return Response(PriceOut(selectors.price_history(grid), many=True).data)


class TradesApi(APIView):
    """Operators: the latest offers and contracts of every grid."""

    permission_classes = [IsStaff]

    class OutputSerializer(serializers.Serializer):
        offers = OfferOut(many=True)
        contracts = ContractOut(many=True)

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request):
        offers, contracts = selectors.trades_all()
        return Response(self.OutputSerializer({"offers": offers, "contracts": contracts}).data)
