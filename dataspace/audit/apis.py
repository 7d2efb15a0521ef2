"""The auditor's door on the platform: the reconciliation report (the chain itself is the other)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsAuditor
from dataspace.api_docs import ERRORS_AUTH, error_responses
from dataspace.audit import services
from dataspace.audit.models import ReconcileReport
from dataspace.audit.receipts import receipt_verify
from dataspace.audit.space import space_describe
from dataspace.errors import DomainError, ErrorCode, TransientError


class ReconcileOutputSerializer(serializers.ModelSerializer[ReconcileReport]):
    checked = serializers.DictField(child=serializers.IntegerField())
    mismatches = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = ReconcileReport
        fields = ["id", "ok", "checked", "mismatches", "started_at", "finished_at"]


class ReconcileQueuedSerializer(serializers.Serializer[Any]):
    queued = serializers.BooleanField()


class ReconcileApi(APIView):
    permission_classes = [IsAuditor]

    @extend_schema(
        responses={
            200: ReconcileOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND),
        },
        description="The latest reconciliation of chain and platform: chain events and contract state "
        "against the platform's records, both ways (every use, settlement, refund, agreement and offer). "
        "The same report as `manage.py audit reconcile`; POST asks for a new run.",
    )
    def get(self, request: Request) -> Response:
        report = services.reconcile_latest()
        if report is None:
            raise DomainError("No reconciliation has run yet: POST to ask for one.", code=ErrorCode.NOT_FOUND)
        return Response(ReconcileOutputSerializer(report).data)

    @extend_schema(
        request=None,
        responses={
            202: ReconcileQueuedSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.BROKER_UNAVAILABLE),
        },
        description="Queue a reconciliation run; GET shows its report once it finished.",
    )
    def post(self, request: Request) -> Response:
        if not services.reconcile_request():
            raise TransientError("The task queue is unreachable; try again shortly.", code=ErrorCode.BROKER_UNAVAILABLE)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class SpaceContractSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    address = serializers.CharField()
    deployed_block = serializers.IntegerField(allow_null=True)
    tx_hash = serializers.CharField()


class SpaceTokenSerializer(serializers.Serializer[Any]):
    address = serializers.CharField()
    symbol = serializers.CharField()
    decimals = serializers.IntegerField()


class SpaceCustodianSerializer(serializers.Serializer[Any]):
    address = serializers.CharField(help_text="The custodian's receipt-signing address.")
    valid_from_block = serializers.IntegerField(help_text="First block it signs receipts for.")
    valid_until_block = serializers.IntegerField(
        allow_null=True, help_text="First block it no longer does (null: the current custodian)."
    )


class SpaceTeeSerializer(serializers.Serializer[Any]):
    backend = serializers.CharField()
    label = serializers.ChoiceField(choices=["SIMULATED", "HARDWARE"])  # type: ignore[assignment]
    simulated = serializers.BooleanField()


class SpaceApi(APIView):
    """ISSUE-12: the space's public facts for auditors' tools."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="Space")
    class OutputSerializer(serializers.Serializer[Any]):
        chain_id = serializers.IntegerField()
        rpc_url = serializers.CharField(help_text="A JSON-RPC URL auditors may read the chain from.")
        contracts = SpaceContractSerializer(many=True)
        token = SpaceTokenSerializer()
        custodians = SpaceCustodianSerializer(many=True)
        tee = SpaceTeeSerializer()

    @extend_schema(
        responses={200: OutputSerializer, **error_responses(ErrorCode.CHAIN_UNAVAILABLE)},
        description="The space as an auditor's tools need it, no account required: the chain id and an RPC URL, "
        "every deployed contract's address (the payment token's too, with its symbol and decimals), the key "
        "custodian's receipt-signing addresses with the blocks each was valid at (read from CustodianRegistry), "
        "and whether TEE execution is SIMULATED (the sandbox) or hardware.",
    )
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(space_describe()).data)


class ReceiptVerifyApi(APIView):
    """ISSUE-12: an auditor checks a release receipt against the chain."""

    permission_classes = [IsAuditor]

    @extend_schema_serializer(component_name="ReceiptToVerify")
    class InputSerializer(serializers.Serializer[Any]):
        receipt = serializers.DictField(help_text="The signed receipt as the job's consumer received it.")

    @extend_schema_serializer(component_name="ReceiptCheck")
    class OutputSerializer(serializers.Serializer[Any]):
        job_id = serializers.CharField()
        custodian = serializers.CharField()
        recorded_block = serializers.IntegerField()
        settled_block = serializers.IntegerField()
        custodian_valid_from = serializers.IntegerField()
        custodian_valid_until = serializers.IntegerField(allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(
                *ERRORS_AUTH,
                ErrorCode.VALIDATION_FAILED,
                ErrorCode.ROLE_REQUIRED,
                ErrorCode.SIGNATURE_INVALID,
                ErrorCode.RECEIPT_NOT_ON_CHAIN,
                ErrorCode.CUSTODIAN_UNKNOWN,
                ErrorCode.CHAIN_UNAVAILABLE,
            ),
        },
        description="Checks a release receipt with the chain alone: its signature recovers to an address "
        "CustodianRegistry held between the job's UsageRecorded and JobSettled blocks, and the settlement's "
        "attestation hash is the receipt's SHA-256.",
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        check = receipt_verify(receipt=body.validated_data["receipt"])
        return Response(self.OutputSerializer(asdict(check)).data)
