"""API tokens: ask for one with a username and password (rate limited like
every login), revoke it with it."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ..ratelimit import client_address, login_check
from ..services import api_token_get, api_token_revoke
from .errors import Refused
from .serializers import ErrorOut
from .throttles import TokenThrottle


class TokenApi(APIView):
    throttle_classes = [TokenThrottle]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, style={"input_type": "password"}, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="send it as `Authorization: Token <token>`")

    def _asking(self) -> bool:
        return getattr(getattr(self, "request", None), "method", None) == "POST"

    def get_permissions(self):
        return [AllowAny()] if self._asking() else [IsAuthenticated()]

    def get_authenticators(self):
        # Asking for a token needs no credentials but the password itself.
        return [] if self._asking() else super().get_authenticators()

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, 400: OpenApiResponse(ErrorOut), 429: OpenApiResponse(ErrorOut)},
        auth=[],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        login_check(data.validated_data["username"], client_address(request))
        user = authenticate(request, **data.validated_data)
        if user is None or not user.is_active:
            raise Refused("Unable to log in with these credentials.")
        return Response({"token": api_token_get(user).key})

    @extend_schema(request=None, responses={204: None, 401: OpenApiResponse(ErrorOut)})
    def delete(self, request):
        api_token_revoke(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
