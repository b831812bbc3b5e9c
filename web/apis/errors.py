"""One error body for every API failure:

``{"error": {"status": 400, "code": "invalid", "message": "...", "fields": {...}}}``

``fields`` (only for invalid input) maps each bad field to its messages. A
service's refusal (a ``ResidentError``, ``PaymentsError``, ``SupplyError`` or
Django ``ValidationError``: nothing was written) is a 400 with its message.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from meters.supply import SupplyError
from utility.payments.services import PaymentsError
from utility.residents.services import ResidentError

from ..ratelimit import LoginLocked

REFUSALS = (ResidentError, PaymentsError, SupplyError)


class Refused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "refused"
    default_detail = "The request was refused; nothing changed."


class TooManyLogins(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "login_locked"


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, LoginLocked):
        return TooManyLogins(str(exc))
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return Refused(" ".join(exc.messages))
    if isinstance(exc, REFUSALS):
        return Refused(str(exc))
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def _message(detail) -> str:
    """The first human sentence in a DRF error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _message(value)
            return text if key in ("non_field_errors", "detail") else f"{key}: {text}"
        return "Invalid input."
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid input."
    return str(detail)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    exc = _translate(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 page and the error log
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    body = {"status": response.status_code, "code": _code(exc, detail), "message": _message(detail)}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        body["fields"] = {
            key: [str(m) for m in (value if isinstance(value, list) else [value])] for key, value in detail.items()
        }
    response.data = {"error": body}
    return response


def _code(exc: Exception, detail) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    return codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
