"""Offers (providers publish, anyone browses), agreements (consumers accept) and earnings."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsConsumer, IsProvider, request_user
from dataspace.accounts.selectors import wallet_custodial_address
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.catalog import selectors as catalog_selectors
from dataspace.chain import agents
from dataspace.chain.serializers import ChainWriteSerializer, chain_write
from dataspace.errors import ErrorCode
from dataspace.policies import odrl, selectors, services
from dataspace.policies.models import Agreement, Offer
from dataspace.privacy import services as privacy_services


class OfferOutputSerializer(serializers.ModelSerializer[Offer]):
    provider = serializers.CharField(source="provider.username")
    price_per_call = serializers.CharField(help_text="Token base units, as a decimal string.")
    publish_tx = ChainWriteSerializer(allow_null=True)

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
            "allow_sandbox",
            "compute_rate",
            "max_cpu_millis",
            "memory_limit_bytes",
            "wall_seconds",
            "policy",
            "policy_hash",
            "status",
            "failure",
            "chain_offer_id",
            "publish_tx",
            "created_at",
        ]


class AgreementOutputSerializer(serializers.ModelSerializer[Agreement]):
    consumer = serializers.CharField(source="consumer.username")
    amount = serializers.CharField()
    approve_tx = ChainWriteSerializer(allow_null=True)
    accept_tx = ChainWriteSerializer(allow_null=True)

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
            "approve_tx",
            "accept_tx",
            "created_at",
        ]


OFFER_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.NOT_FOUND,
    ErrorCode.INVALID_OPERATION,
    ErrorCode.PRIVACY_TERMS_INVALID,
    ErrorCode.DATASET_NOT_ON_CHAIN,
    ErrorCode.WALLET_REQUIRED,
)


class EarningsOutputSerializer(serializers.Serializer[Any]):
    address = serializers.CharField()
    withdrawable = serializers.CharField(help_text="Token base units, as a decimal string.")


class WithdrawOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The outbox write; its status is in withdraw_tx.")
    withdraw_tx = ChainWriteSerializer()


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
        privacy_budget = serializers.FloatField(
            min_value=0,
            max_value=1_000_000,
            required=False,
            allow_null=True,
            default=None,
            help_text="The most epsilon one consumer may spend on the dataset through this offer (the dataset's "
            "own total binds all consumers together). Default: the dataset's total; 0 for a non-personal dataset.",
        )
        min_cohort = serializers.IntegerField(min_value=1, max_value=1_000_000, default=10)
        # ISSUE-13: TEE execution terms (only with the operation "algorithm").
        allow_sandbox = serializers.BooleanField(
            default=False,
            help_text="Accept the local sandbox backend's SIMULATED evidence (no hardware TEE). Off by default.",
        )
        compute_rate = serializers.IntegerField(
            min_value=0, max_value=2**96 - 1, default=0, help_text="Token base units per CPU-second (metered offers)."
        )
        max_cpu_millis = serializers.IntegerField(
            min_value=0,
            max_value=2**32 - 1,
            default=0,
            help_text="CPU-milliseconds one call may be charged; 0: unmetered.",
        )
        memory_limit_bytes = serializers.IntegerField(min_value=1, default=512 * 1024 * 1024)
        wall_seconds = serializers.IntegerField(min_value=1, max_value=86400, default=60)

    class FilterSerializer(serializers.Serializer[Any]):
        dataset = serializers.UUIDField(required=False, help_text="Only the offers on this dataset.")

    def get_permissions(self) -> list[Any]:
        return [IsProvider()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={200: paginated(OfferOutputSerializer), **error_responses(*ERRORS_COMMON)},
        description="Published offers (and your own, whatever their state). `dataset=<id>` filters.",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        offers = selectors.offer_list(viewer=request_user(request), dataset_id=filters.validated_data.get("dataset"))
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
        dataset = catalog_selectors.dataset_get_owned(owner=request_user(request), dataset_id=v["dataset"])
        offer = services.offer_publish(
            provider=request_user(request),
            dataset=dataset,
            terms=odrl.Terms(
                purposes=sorted(set(v["purposes"])),
                operations=sorted(set(v["operations"])),
                max_calls=v["max_calls"],
                price_per_call=v["price_per_call"],
                duration_seconds=round(v["duration_days"] * 86400),
                privacy_budget=_consumer_share(v["privacy_budget"], dataset),
                min_cohort=v["min_cohort"],
                non_personal=dataset.non_personal,
                allow_sandbox=v["allow_sandbox"],
                compute_rate=v["compute_rate"],
                max_cpu_millis=v["max_cpu_millis"],
                memory_limit_bytes=v["memory_limit_bytes"],
                wall_seconds=v["wall_seconds"],
            ),
        )
        return Response(OfferOutputSerializer(offer).data, status=status.HTTP_202_ACCEPTED)


def _consumer_share(asked: float | None, dataset: Any) -> float:
    if asked is not None:
        return float(asked)
    return 0.0 if dataset.non_personal else float(dataset.privacy_epsilon)


class OfferDetailApi(APIView):
    @extend_schema(responses={200: OfferOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, offer_id: uuid.UUID) -> Response:
        offer = selectors.offer_get(viewer=request_user(request), offer_id=offer_id)
        return Response(OfferOutputSerializer(offer).data)


class AgreementListCreateApi(APIView):
    @extend_schema_serializer(component_name="AgreementCreate")
    class InputSerializer(serializers.Serializer[Any]):
        offer = serializers.UUIDField()
        calls = serializers.IntegerField(
            min_value=1, max_value=2**32 - 1, required=False, help_text="Custodial wallets: the calls to buy."
        )
        # ISSUE-16: an own-wallet consumer accepts on chain themselves and registers the result.
        accept_tx = serializers.RegexField(
            r"^0x[0-9a-fA-F]{64}$",
            required=False,
            help_text="Own-wallet consumers: the hash of the acceptOffer transaction your wallet sent; the "
            "agreement is read from the chain and registered (201; 200 if it already was).",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("calls" in attrs) == ("accept_tx" in attrs):
                raise serializers.ValidationError("Send either calls (custodial wallet) or accept_tx (your own).")
            return attrs

    def get_permissions(self) -> list[Any]:
        return [IsConsumer()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: paginated(AgreementOutputSerializer), **error_responses(*ERRORS_AUTH)},
        description="Your agreements: as consumer, and on your offers as provider.",
    )
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.agreement_list(viewer=request_user(request)), request, view=self)
        return paginator.get_paginated_response(AgreementOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            202: AgreementOutputSerializer,
            201: AgreementOutputSerializer,
            200: AgreementOutputSerializer,
            **error_responses(
                *ERRORS_COMMON,
                ErrorCode.ROLE_REQUIRED,
                ErrorCode.NOT_FOUND,
                ErrorCode.OFFER_NOT_PUBLISHED,
                ErrorCode.WALLET_REQUIRED,
                ErrorCode.INSUFFICIENT_FUNDS,
                ErrorCode.PERMISSION_DENIED,
                ErrorCode.CONFLICT,
                ErrorCode.CHAIN_REVERTED,
                ErrorCode.CHAIN_UNAVAILABLE,
            ),
        },
        description="Accept an offer for `calls` calls: your custodial wallet approves the escrow "
        "(calls x price) and accepts the offer on chain (202; poll until `status` is active). With your own "
        "wallet, send approve and acceptOffer yourself and post `accept_tx`: the agreement is read from the "
        "chain and registered active (201).",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        offer = selectors.offer_get(viewer=request_user(request), offer_id=data.validated_data["offer"])
        if "accept_tx" in data.validated_data:  # ISSUE-16
            registered, created = services.agreement_register_external(
                consumer=request_user(request), offer=offer, tx_hash=data.validated_data["accept_tx"]
            )
            code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
            return Response(AgreementOutputSerializer(registered).data, status=code)
        agreement = services.agreement_create(
            consumer=request_user(request), offer=offer, calls=data.validated_data["calls"]
        )
        return Response(AgreementOutputSerializer(agreement).data, status=status.HTTP_202_ACCEPTED)


class AgreementDetailApi(APIView):
    @extend_schema(responses={200: AgreementOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, agreement_id: uuid.UUID) -> Response:
        agreement = selectors.agreement_get(viewer=request_user(request), agreement_id=agreement_id)
        return Response(AgreementOutputSerializer(agreement).data)


# ISSUE-16: what an agreement has left, for the SDK's `redlake budget`.
class AgreementBudgetApi(APIView):
    @extend_schema_serializer(component_name="AgreementBudget")
    class OutputSerializer(serializers.Serializer[Any]):
        agreement = serializers.UUIDField()
        calls = serializers.IntegerField(help_text="Calls bought.")
        calls_used = serializers.IntegerField(help_text="Calls reserved or spent by your jobs.")
        calls_left = serializers.IntegerField()
        expires_at = serializers.DateTimeField(allow_null=True)
        non_personal = serializers.BooleanField()
        epsilon_share = serializers.FloatField(help_text="Your share of the dataset's privacy budget (epsilon).")
        epsilon_left = serializers.FloatField(
            help_text="Epsilon you may still spend on the dataset: the smaller of what remains of your share "
            "and of the dataset's total."
        )

    @extend_schema(responses={200: OutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, agreement_id: uuid.UUID) -> Response:
        consumer = request_user(request)
        agreement = selectors.agreement_get_consumed(consumer=consumer, agreement_id=agreement_id)
        offer = agreement.offer
        left = privacy_services.epsilon_left(
            dataset=offer.dataset, consumer=consumer, consumer_cap_epsilon=offer.privacy_budget
        )
        body = {
            "agreement": agreement.id,
            "calls": agreement.calls,
            "calls_used": agreement.calls_reserved,
            "calls_left": max(agreement.calls - agreement.calls_reserved, 0),
            "expires_at": agreement.expires_at,
            "non_personal": offer.dataset.non_personal,
            "epsilon_share": offer.privacy_budget,
            "epsilon_left": left,
        }
        return Response(self.OutputSerializer(body).data)


class EarningsApi(APIView):
    permission_classes = [IsProvider]

    @extend_schema(
        request=None,
        responses={
            200: EarningsOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.WALLET_REQUIRED),
        },
        description="Settled earnings waiting in the contract for you to withdraw (token base units).",
    )
    def get(self, request: Request) -> Response:
        address = wallet_custodial_address(user=request_user(request), action="hold earnings")
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
        tx = services.earnings_withdraw(provider=request_user(request))
        return Response({"withdraw_tx": chain_write(tx), "id": tx.pk}, status=status.HTTP_202_ACCEPTED)
