"""Limit/offset pagination for every list (HackSoft's Django-Styleguide-Example)."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.response import Response


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "limit": self.limit,
                "offset": self.offset,
                "count": self.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["limit", "offset", "count", "results"],
            "properties": {
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "count": {"type": "integer"},
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
                "results": schema,
            },
        }


def get_paginated_response(*, serializer_class, queryset, request, view, pagination_class=LimitOffsetPagination):
    """One page of ``queryset`` through ``serializer_class``, with the counts."""
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
