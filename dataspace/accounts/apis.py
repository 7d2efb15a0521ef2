"""Account API: tokens, the current user, wallets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from dataspace.accounts import selectors, services
from dataspace.accounts.models import User, Wallet
from dataspace.accounts.permissions import request_user
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, error_responses
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.parsers import StrictInputSerializer


class WalletOutput(serializers.ModelSerializer[Wallet]):
    class Meta:
        model = Wallet
        fields = ["kind", "address", "created_at"]


class MeApi(APIView):
    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField()
        # Not an EmailField: an account made without an address has "", which is no email.
        email = serializers.CharField(help_text="The account's email address; empty if it has none.")
        roles = serializers.ListField(child=serializers.CharField())
        wallet = WalletOutput(allow_null=True)

    @extend_schema(responses={200: OutputSerializer, **error_responses(*ERRORS_AUTH)})
    def get(self, request: Request) -> Response:
        user = request_user(request)
        wallet = selectors.wallet_get(user=user)
        data = {"username": user.username, "email": user.email, "roles": user.roles, "wallet": wallet}
        return Response(self.OutputSerializer(data).data)


class TokenCreateApi(APIView):
    """Exchanges username and password for an API token (shown once; stored hashed)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]
    throttle_scope = "login"

    @extend_schema_serializer(component_name="TokenCredentials")
    class InputSerializer(StrictInputSerializer):  # ISSUE-14: unknown fields refused
        username = serializers.CharField()
        password = serializers.CharField(write_only=True)
        ttl_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False)

    @extend_schema_serializer(component_name="IssuedToken")
    class OutputSerializer(serializers.Serializer[Any]):
        token = serializers.CharField()
        token_key = serializers.CharField()
        expiry = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(*ERRORS_COMMON, ErrorCode.THROTTLED)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, username=data.validated_data["username"], password=data.validated_data["password"])
        if not isinstance(user, User):
            raise DomainError("Unknown username or wrong password.", code=ErrorCode.AUTHENTICATION_FAILED)
        ttl = data.validated_data.get("ttl_hours")
        instance, token = services.api_token_issue(user=user, ttl=timedelta(hours=ttl) if ttl else None)
        out = {"token": token, "token_key": instance.token_key, "expiry": instance.expiry}
        return Response(self.OutputSerializer(out).data, status=status.HTTP_201_CREATED)


class TokenListApi(APIView):
    @extend_schema_serializer(component_name="ApiToken")
    class OutputSerializer(serializers.ModelSerializer[AuthToken]):
        class Meta:
            model = AuthToken
            fields = ["token_key", "created", "expiry"]

    @extend_schema(responses={200: OutputSerializer(many=True), **error_responses(*ERRORS_AUTH)})
    def get(self, request: Request) -> Response:
        tokens = AuthToken.objects.filter(user=request_user(request)).order_by("-created")
        return Response(self.OutputSerializer(tokens, many=True).data)


class TokenRevokeApi(APIView):
    @extend_schema(responses={204: None, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def delete(self, request: Request, token_key: str) -> Response:
        if not services.api_token_revoke(user=request_user(request), token_key=token_key):
            raise NotFound("token")
        return Response(status=status.HTTP_204_NO_CONTENT)


class WalletCustodialCreateApi(APIView):
    @extend_schema(
        request=None, responses={201: WalletOutput, **error_responses(*ERRORS_AUTH, ErrorCode.WALLET_EXISTS)}
    )
    def post(self, request: Request) -> Response:
        wallet = services.wallet_create_custodial(user=request_user(request))
        return Response(WalletOutput(wallet).data, status=status.HTTP_201_CREATED)


class WalletChallengeApi(APIView):
    @extend_schema_serializer(component_name="WalletChallenge")
    class OutputSerializer(serializers.Serializer[Any]):
        nonce = serializers.CharField()
        message = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={201: OutputSerializer, **error_responses(*ERRORS_AUTH)})
    def post(self, request: Request) -> Response:
        challenge = services.wallet_challenge_issue(user=request_user(request))
        return Response(self.OutputSerializer(challenge).data, status=status.HTTP_201_CREATED)


class WalletRegisterApi(APIView):
    """Links an address you control: sign the challenge message (EIP-191 personal_sign)."""

    @extend_schema_serializer(component_name="WalletRegistration")
    class InputSerializer(StrictInputSerializer):  # ISSUE-14: unknown fields refused
        nonce = serializers.CharField(max_length=64)
        address = serializers.RegexField(r"^0x[0-9a-fA-F]{40}$")
        signature = serializers.RegexField(r"^(0x)?[0-9a-fA-F]{130}$")

    @extend_schema(
        request=InputSerializer,
        responses={
            201: WalletOutput,
            **error_responses(
                *ERRORS_COMMON, ErrorCode.CHALLENGE_INVALID, ErrorCode.SIGNATURE_INVALID, ErrorCode.WALLET_EXISTS
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_register_external(user=request_user(request), **data.validated_data)
        return Response(WalletOutput(wallet).data, status=status.HTTP_201_CREATED)
