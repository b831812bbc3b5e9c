"""OpenAPI naming: each view declares its serializers as nested classes
(``MeterFundApi.InputSerializer``); their components are named after the
view (``MeterFundInput``) so that they do not collide."""

from __future__ import annotations

from drf_spectacular import openapi


class AutoSchema(openapi.AutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        name = super().get_serializer_name(serializer, direction)
        owner, _, inner = type(serializer).__qualname__.rpartition(".")
        if owner:
            name = owner.removesuffix("Api") + inner.removesuffix("Serializer")
        return name
