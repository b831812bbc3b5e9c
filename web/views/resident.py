"""A resident's dashboard and meter pages (and the CSV of a meter's history)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from contracts.chain import ChainError
from contracts.selectors import account_on_chain
from meters.reports import meter_access, meter_decisions, meter_readings, meters_of_owner
from settlement.reports import line_row, meter_lines
from utility import clock
from utility.payments.selectors import coin_price_for, wallet_balance_uk, wallet_freeze_reason

from ..presenters import hourly_chart, interval_rows, meter_cards

ROWS_PER_PAGE = 24  # a day of hourly intervals
MAX_PAGE = 100_000


def _page_number(text: str | None) -> int:
    """``?page=`` as a whole number from 1 (anything else: the first page)."""
    try:
        return min(MAX_PAGE, max(1, int(text or 1)))
    except ValueError:
        return 1


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    meters = list(meters_of_owner(request.user))
    context = {
        "balance_uk": wallet_balance_uk(request.user),
        "frozen": wallet_freeze_reason(request.user),
        "price": coin_price_for(request.user),
        "cards": meter_cards(meters, now),
        "chart": hourly_chart(meters, now),
        "now": now,
    }
    return render(request, "web/dashboard.html", context)


def _found(request: HttpRequest, public_id: str):
    found = meter_access(public_id, request.user)
    if found is None:
        raise Http404("No meter has that id.")
    return found


@login_required
def meter_page(request: HttpRequest, public_id: str) -> HttpResponse:
    """The owner (or staff) sees everything; anyone else sees a public meter's
    id, label, kind and balance, or of a private one only its id."""
    found = _found(request, public_id)
    meter, now = found.meter, clock.now()
    if not found.full:
        card = meter_cards([meter], now)[0] if found.shows_balance else None
        return render(request, "web/meter_public.html", {"meter": meter, "card": card, "access": found.access})
    page = _page_number(request.GET.get("page"))
    # One row more than a page tells whether there is an older page: no
    # COUNT over a year of readings.
    offset = (page - 1) * ROWS_PER_PAGE
    readings = list(meter_readings(meter.pk)[offset : offset + ROWS_PER_PAGE + 1])
    has_older, readings = len(readings) > ROWS_PER_PAGE, readings[:ROWS_PER_PAGE]
    # The window of this page: up to the interval after the newest row of the
    # page before (the first page is open-ended, for lines without a reading).
    until = None
    if page > 1 and readings:
        until = readings[0].interval_start + timedelta(seconds=meter.grid.interval_s)
    context = {
        "meter": meter,
        "card": meter_cards([meter], now)[0],
        "page": {"number": page, "newer": page - 1 if page > 1 else None, "older": page + 1 if has_older else None},
        "rows": interval_rows(meter, readings, until),
        "decisions": list(meter_decisions(meter.pk)[:20]),
        "chart": hourly_chart([meter], now),
    }
    return render(request, "web/meter.html", context)


@login_required
def meter_chain(request: HttpRequest, public_id: str) -> HttpResponse:
    """The meter account's on-chain status (htmx, loaded after the page: the
    chain may be slow or down, the page must not wait for it)."""
    found = _found(request, public_id)
    if not found.full:
        raise Http404("No meter has that id.")
    status, error = None, ""
    try:
        status = account_on_chain(found.meter.account_id)
    except ChainError as exc:
        error = str(exc)
    return render(request, "web/partials/chain_status.html", {"status": status, "error": error})


CSV_HEADER = [
    "interval_start_utc",
    "reported_import_wh",
    "reported_export_wh",
    "late",
    "settled_in_utc",
    "settled_import_wh",
    "settled_export_wh",
    "paid_uk",
    "earned_uk",
    "fee_share_uk",
    "grid_loss_wh",
    "grid_loss_bp",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(meter_id: int) -> Iterator[list]:
    """Readings and lines merged by interval, oldest first, streamed in chunks."""
    readings = iter(meter_readings(meter_id).order_by("interval_start").iterator(chunk_size=2000))
    lines = (line_row(v) for v in meter_lines(meter_id, newest_first=False).iterator(chunk_size=2000))
    reading, line = next(readings, None), next(lines, None)
    while reading is not None or line is not None:
        start = min(x.interval_start for x in (reading, line) if x is not None)
        r = reading if reading is not None and reading.interval_start == start else None
        ln = line if line is not None and line.interval_start == start else None
        yield [
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            *(
                (r.import_wh, r.export_wh, int(r.late), r.settled_in and r.settled_in.strftime("%Y-%m-%dT%H:%M:%SZ"))
                if r
                else ("", "", "", "")
            ),
            *(
                (
                    ln.import_wh,
                    ln.export_wh,
                    ln.debit_uk,
                    ln.credit_uk,
                    ln.fee_share_uk,
                    ln.loss_wh,
                    "" if ln.loss_bp is None else ln.loss_bp,
                )
                if ln
                else ("",) * 7
            ),
        ]
        if r is not None:
            reading = next(readings, None)
        if ln is not None:
            line = next(lines, None)


@login_required
def meter_csv(request: HttpRequest, public_id: str) -> StreamingHttpResponse:
    """Every interval of the meter's history as CSV (integers: Wh and µk)."""
    found = _found(request, public_id)
    if not found.full:
        raise Http404("No meter has that id.")
    writer = csv.writer(_Echo())
    rows = (writer.writerow(row) for row in _chain_header(_csv_rows(found.meter.pk)))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{found.meter.public_id}-history.csv"'
    return response


def _chain_header(rows: Iterator[list]) -> Iterator[list]:
    yield CSV_HEADER
    yield from rows


@login_required
def meter_state_partial(request: HttpRequest, public_id: str) -> HttpResponse:
    """The meter's card (state, balance): htmx polls it right after a funding,
    while the decision that follows the funding is on its way."""
    found = _found(request, public_id)
    if not found.shows_balance:
        raise Http404("No meter has that id.")
    card = meter_cards([found.meter], clock.now())[0]
    return render(request, "web/partials/meter_card.html", {"card": card, "full": found.full})
