"""Offers (providers publish, anyone browses), agreements (consumers accept) and earnings."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.models import User
from dataspace.accounts.permissions import IsConsumer, IsProvider
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.catalog import selectors as catalog_selectors
from dataspace.chain import agents
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies import odrl, services
from dataspace.policies.models import Agreement, Offer


def _user(request: Request) -> User:
    assert isinstance(request.user, User)
    return request.user


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise DomainError("Not found.", code=ErrorCode.NOT_FOUND) from None


def _tx(tx: Any) -> dict[str, Any] | None:
    if tx is None:
        return None
    return {
        "status": tx.status,
        "tx_hash": tx.tx_hash or None,
        "block_number": tx.block_number,
        "revert_reason": tx.revert_reason or None,
    }


class OfferOutputSerializer(serializers.ModelSerializer[Offer]):
    provider = serializers.CharField(source="provider.username")
    price_per_call = serializers.CharField(help_text="Token base units, as a decimal string.")
    publish_tx = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = [
            "id",
            "dataset",
            "provider",
            "purposes",
            "operations",
            "max_calls",
            "price_per_call",
            "duration_seconds",
            "privacy_budget",
            "min_cohort",
            "policy",
            "policy_hash",
            "status",
            "failure",
            "chain_offer_id",
            "publish_tx",
            "created_at",
        ]

    def get_publish_tx(self, offer: Offer) -> dict[str, Any] | None:
        return _tx(offer.publish_tx)


class AgreementOutputSerializer(serializers.ModelSerializer[Agreement]):
    consumer = serializers.CharField(source="consumer.username")
    amount = serializers.CharField()
    approve_tx = serializers.SerializerMethodField()
    accept_tx = serializers.SerializerMethodField()

    class Meta:
        model = Agreement
        fields = [
            "id",
            "offer",
            "consumer",
            "calls",
            "amount",
            "status",
            "failure",
            "chain_agreement_id",
            "expires_at",
            "calls_reserved",
            "budget_reserved",
            "approve_tx",
            "accept_tx",
            "created_at",
        ]

    def get_approve_tx(self, agreement: Agreement) -> dict[str, Any] | None:
        return _tx(agreement.approve_tx)

    def get_accept_tx(self, agreement: Agreement) -> dict[str, Any] | None:
        return _tx(agreement.accept_tx)


OFFER_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.NOT_FOUND,
    ErrorCode.INVALID_OPERATION,
    ErrorCode.DATASET_NOT_ON_CHAIN,
    ErrorCode.WALLET_REQUIRED,
)


class EarningsOutputSerializer(serializers.Serializer[Any]):
    address = serializers.CharField()
    withdrawable = serializers.CharField(help_text="Token base units, as a decimal string.")


class WithdrawOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The outbox write; its status is in withdraw_tx.")
    withdraw_tx = serializers.DictField()


class OfferListCreateApi(APIView):
    @extend_schema_serializer(component_name="OfferCreate")
    class InputSerializer(serializers.Serializer[Any]):
        dataset = serializers.UUIDField()
        purposes = serializers.ListField(
            child=serializers.RegexField(r"^[a-z0-9][a-z0-9_.:-]{0,63}$"), min_length=1, max_length=32
        )
        operations = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=32)
        max_calls = serializers.IntegerField(min_value=1, max_value=2**32 - 1)
        price_per_call = serializers.IntegerField(min_value=0, max_value=2**96 - 1)
        duration_days = serializers.FloatField(min_value=1 / 24, max_value=3650)
        privacy_budget = serializers.FloatField(min_value=0, max_value=1_000_000, default=0.0)
        min_cohort = serializers.IntegerField(min_value=1, max_value=1_000_000, default=10)

    def get_permissions(self) -> list[Any]:
        return [IsProvider()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=[
            OpenApiParameter("dataset", OpenApiTypes.UUID, OpenApiParameter.QUERY, description="Only this dataset."),
            *PAGE_PARAMETERS,
        ],
        responses={200: paginated(OfferOutputSerializer), **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)},
        description="Published offers (and your own, whatever their state). `dataset=<id>` filters.",
    )
    def get(self, request: Request) -> Response:
        offers: QuerySet[Offer] = Offer.objects.select_related("provider", "publish_tx").filter(
            Q(status=Offer.Status.PUBLISHED) | Q(provider=_user(request))
        )
        if dataset := request.query_params.get("dataset"):
            offers = offers.filter(dataset_id=_uuid(dataset))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(offers, request, view=self)
        return paginator.get_paginated_response(OfferOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={202: OfferOutputSerializer, **error_responses(*OFFER_ERRORS)},
        description="Publish an offer for your dataset: its ODRL policy is hashed and pinned on chain by "
        "publishOffer, sent from your custodial wallet. Poll the offer until `status` is published.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        dataset = catalog_selectors.dataset_get_owned(owner=_user(request), dataset_id=v["dataset"])
        offer = services.offer_publish(
            provider=_user(request),
            dataset=dataset,
            terms=odrl.Terms(
                purposes=sorted(set(v["purposes"])),
                operations=sorted(set(v["operations"])),
                max_calls=v["max_calls"],
                price_per_call=v["price_per_call"],
                duration_seconds=round(v["duration_days"] * 86400),
                privacy_budget=v["privacy_budget"],
                min_cohort=v["min_cohort"],
            ),
        )
        return Response(OfferOutputSerializer(offer).data, status=status.HTTP_202_ACCEPTED)


class OfferDetailApi(APIView):
    @extend_schema(responses={200: OfferOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, offer_id: str) -> Response:
        offer = (
            Offer.objects.select_related("provider", "publish_tx")
            .filter(Q(status=Offer.Status.PUBLISHED) | Q(provider=_user(request)), pk=_uuid(offer_id))
            .first()
        )
        if offer is None:
            raise DomainError("No offer has this id.", code=ErrorCode.NOT_FOUND)
        return Response(OfferOutputSerializer(offer).data)


def _agreements_of(user: User) -> QuerySet[Agreement]:
    return Agreement.objects.select_related("consumer", "approve_tx", "accept_tx").filter(
        Q(consumer=user) | Q(offer__provider=user)
    )


class AgreementListCreateApi(APIView):
    @extend_schema_serializer(component_name="AgreementCreate")
    class InputSerializer(serializers.Serializer[Any]):
        offer = serializers.UUIDField()
        calls = serializers.IntegerField(min_value=1, max_value=2**32 - 1)

    def get_permissions(self) -> list[Any]:
        return [IsConsumer()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: paginated(AgreementOutputSerializer), **error_responses(*ERRORS_AUTH)},
        description="Your agreements: as consumer, and on your offers as provider.",
    )
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(_agreements_of(_user(request)), request, view=self)
        return paginator.get_paginated_response(AgreementOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            202: AgreementOutputSerializer,
            **error_responses(
                *ERRORS_COMMON,
                ErrorCode.ROLE_REQUIRED,
                ErrorCode.NOT_FOUND,
                ErrorCode.OFFER_NOT_PUBLISHED,
                ErrorCode.WALLET_REQUIRED,
                ErrorCode.INSUFFICIENT_FUNDS,
            ),
        },
        description="Accept an offer for `calls` calls: your custodial wallet approves the escrow "
        "(calls x price) and accepts the offer on chain. Poll until `status` is active.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        offer = Offer.objects.filter(pk=data.validated_data["offer"]).first()
        if offer is None or (offer.status != Offer.Status.PUBLISHED and offer.provider_id != request.user.pk):
            raise DomainError("No offer has this id.", code=ErrorCode.NOT_FOUND)
        agreement = services.agreement_create(consumer=_user(request), offer=offer, calls=data.validated_data["calls"])
        return Response(AgreementOutputSerializer(agreement).data, status=status.HTTP_202_ACCEPTED)


class AgreementDetailApi(APIView):
    @extend_schema(responses={200: AgreementOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, agreement_id: str) -> Response:
        agreement = _agreements_of(_user(request)).filter(pk=_uuid(agreement_id)).first()
        if agreement is None:
            raise DomainError("No agreement of yours has this id.", code=ErrorCode.NOT_FOUND)
        return Response(AgreementOutputSerializer(agreement).data)


class EarningsApi(APIView):
    permission_classes = [IsProvider]

    @extend_schema(
        request=None,
        responses={200: EarningsOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED)},
        description="Settled earnings waiting in the contract for you to withdraw (token base units).",
    )
    def get(self, request: Request) -> Response:
        address = services.custodial_address(_user(request), action="hold earnings")
        return Response({"address": address, "withdrawable": str(agents.UsageAgreementsAgent().withdrawable(address))})

    @extend_schema(
        request=None,
        responses={
            202: WithdrawOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.CONFLICT, ErrorCode.WALLET_REQUIRED),
        },
        description="Withdraw everything settled to your wallet (a pull payment, sent from your wallet).",
    )
    def post(self, request: Request) -> Response:
        tx = services.earnings_withdraw(provider=_user(request))
        return Response({"withdraw_tx": _tx(tx), "id": tx.pk}, status=status.HTTP_202_ACCEPTED)
