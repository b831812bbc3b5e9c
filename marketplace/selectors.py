"""Reads of the market: for settlement (the interval's contracts, locked), for
the pages and the API (offers, bids, limits, contracts, trades, prices).

Money in µk, prices in µk per kWh, energy in Wh, voltages in dV.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, Prefetch, Q, QuerySet

from meters.models import Grid, Meter, Reading
from utility.ledger.models import Account

from .models import (
    OPEN_CONTRACT_STATUSES,
    Bid,
    BidStatus,
    BuyerLimit,
    Contract,
    ContractStatus,
    Delivery,
    Offer,
    OfferStatus,
    PricePoint,
)


@dataclass(frozen=True, slots=True)
class SettlingContract:
    """A contract as settlement needs it for one interval.

    ``cap_wh``: the most it may cover now (its per-interval quantity, at most
    what it still owes); ``funds_uk``: what its escrow holds (locked);
    ``seller_account_id``: the seller meter's ledger account, credited.
    """

    contract_id: int
    seller_meter: str
    buyer_meter: str
    seller_account_id: int
    escrow_account_id: int
    price_uk_per_kwh: int
    cap_wh: int
    delivered_before_wh: int
    funds_uk: int
    tolerance_bp: int | None
    v_min_dv: int | None
    v_max_dv: int | None


def contracts_settling(grid_id: int, interval_start: datetime) -> list[SettlingContract]:
    """The grid's active contracts whose window holds ``interval_start``, by id.

    Call it inside the settlement's transaction: it locks the contracts' rows,
    then their escrow accounts (in id order, the ledger's order), so the funds
    it reports cannot change before the settlement posts. One indexed query
    when the market is empty.
    """
    rows = list(
        Contract.objects.select_for_update(of=("self",))
        .filter(grid_id=grid_id, status=ContractStatus.ACTIVE, delivery_start__lte=interval_start)
        .filter(delivery_end__gt=interval_start)
        .order_by("pk")
        .values_list(
            "pk", "seller_meter__public_id", "buyer_meter__public_id", "seller_meter__account_id",
            "escrow_account_id", "price_uk_per_kwh", "wh_per_interval", "energy_wh", "delivered_wh",
            "tolerance_bp", "v_min_dv", "v_max_dv",
        )
    )  # fmt: skip
    if not rows:
        return []
    escrows = sorted(row[4] for row in rows)
    funds = dict(
        Account.objects.select_for_update().filter(pk__in=escrows).order_by("pk").values_list("pk", "balance_uk")
    )
    return [
        SettlingContract(
            contract_id=pk, seller_meter=seller, buyer_meter=buyer, seller_account_id=seller_account,
            escrow_account_id=escrow, price_uk_per_kwh=price, cap_wh=max(0, min(per_interval, energy - delivered)),
            delivered_before_wh=delivered, funds_uk=max(0, funds[escrow]), tolerance_bp=tolerance,
            v_min_dv=v_min, v_max_dv=v_max,
        )
        for pk, seller, buyer, seller_account, escrow, price, per_interval, energy, delivered, tolerance, v_min, v_max
        in rows
    ]  # fmt: skip


def voltages_settled_in(
    meter_public_ids: list[str], interval_start: datetime
) -> dict[str, tuple[int | None, int | None]]:
    """The lowest ``v_min`` and highest ``v_max`` (dV) of the readings that the
    settlement of ``interval_start`` claimed, per meter; meters that reported
    no voltage are absent."""
    rows = (
        Reading.objects.filter(meter__public_id__in=meter_public_ids, settled_in=interval_start)
        .values("meter__public_id")
        .annotate(v_min=Min("v_min_dv"), v_max=Max("v_max_dv"))
        .values_list("meter__public_id", "v_min", "v_max")
    )
    return {meter: (v_min, v_max) for meter, v_min, v_max in rows if v_min is not None or v_max is not None}


# -- pages and API ------------------------------------------------------------


def offers_open(grid: Grid | None = None) -> QuerySet[Offer]:
    """Open auctions, ending soonest first, with ``best_bid_uk_per_kwh`` and ``bid_count``."""
    offers = Offer.objects.filter(status=OfferStatus.OPEN).select_related("grid", "seller", "seller_meter")
    if grid is not None:
        offers = offers.filter(grid=grid)
    standing = Q(bids__status=BidStatus.STANDING)
    return offers.annotate(
        best_bid_uk_per_kwh=Max("bids__price_uk_per_kwh", filter=standing),
        bid_count=Count("bids", filter=standing),
    ).order_by("ends_at", "pk")


def offer_get(offer_id: int) -> Offer | None:
    """One offer with its bids (best first, then earliest)."""
    bids = Bid.objects.select_related("bidder", "buyer_meter").order_by("-price_uk_per_kwh", "pk")
    return (
        Offer.objects.select_related("grid", "seller", "seller_meter")
        .prefetch_related(Prefetch("bids", queryset=bids))
        .filter(pk=offer_id)
        .first()
    )


def best_bid(offer: Offer) -> Bid | None:
    """The bid that wins if the auction ended now (highest, then earliest)."""
    return offer.bids.filter(status=BidStatus.STANDING).order_by("-price_uk_per_kwh", "pk").first()


def offers_of(user) -> QuerySet[Offer]:
    return Offer.objects.filter(seller_id=user.pk).select_related("seller_meter").order_by("-created_at", "-pk")


def bids_of(user) -> QuerySet[Bid]:
    return Bid.objects.filter(bidder_id=user.pk).select_related("offer", "buyer_meter").order_by("-placed_at", "-pk")


def limits_open(grid: Grid | None = None) -> QuerySet[BuyerLimit]:
    """Active buyers' limits whose sale period has not ended (sellers offer against them)."""
    limits = BuyerLimit.objects.filter(active=True).select_related("grid", "buyer", "buyer_meter")
    if grid is not None:
        limits = limits.filter(grid=grid)
    return limits.order_by("created_at", "pk")


def limit_get(limit_id: int) -> BuyerLimit | None:
    return BuyerLimit.objects.select_related("grid", "buyer", "buyer_meter").filter(pk=limit_id).first()


def limits_of(user) -> QuerySet[BuyerLimit]:
    return BuyerLimit.objects.filter(buyer_id=user.pk).select_related("buyer_meter").order_by("-created_at", "-pk")


def contracts_of(user) -> QuerySet[Contract]:
    """Contracts where ``user`` buys or sells, newest first, with their deliveries."""
    return _contracts().filter(Q(buyer_id=user.pk) | Q(seller_id=user.pk))


def contract_get(contract_id: int, user=None) -> Contract | None:
    """One contract (with deliveries), if ``user`` is a party or staff (None: no check)."""
    contracts = _contracts().filter(pk=contract_id)
    if user is not None and not user.is_staff:
        contracts = contracts.filter(Q(buyer_id=user.pk) | Q(seller_id=user.pk))
    return contracts.first()


def _contracts() -> QuerySet[Contract]:
    deliveries = Delivery.objects.order_by("interval_start")
    return (
        Contract.objects.select_related("grid", "buyer", "seller", "buyer_meter", "seller_meter", "escrow_account")
        .prefetch_related(Prefetch("deliveries", queryset=deliveries))
        .order_by("-created_at", "-pk")
    )


def trades_all(limit: int = 200) -> tuple[list[Offer], list[Contract]]:
    """For operators: the latest offers and contracts of every grid."""
    offers = Offer.objects.select_related("grid", "seller", "seller_meter").order_by("-created_at", "-pk")[:limit]
    return list(offers), list(_contracts()[:limit])


def contracts_open_on(meter: Meter) -> QuerySet[Contract]:
    return Contract.objects.filter(Q(buyer_meter=meter) | Q(seller_meter=meter), status__in=OPEN_CONTRACT_STATUSES)


def price_history(grid: Grid, limit: int = 48) -> list[PricePoint]:
    """The grid's published prices, oldest first, the last ``limit`` intervals."""
    points = PricePoint.objects.filter(grid=grid).order_by("-interval_start")[:limit]
    return list(reversed(points))
