"""The auditor's door on the platform: the reconciliation report (the chain itself is the other)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.models import Role
from dataspace.accounts.permissions import IsAuditor, request_user
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.audit import selectors, services
from dataspace.audit.models import ReconcileReport
from dataspace.audit.receipts import receipt_verify
from dataspace.audit.space import space_describe
from dataspace.chain.serializers import ChainWriteSerializer
from dataspace.compute.models import Job
from dataspace.errors import DomainError, ErrorCode, TransientError
from dataspace.parsers import StrictInputSerializer


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
    class InputSerializer(StrictInputSerializer):  # ISSUE-14: unknown fields refused
        receipt = serializers.DictField(help_text="The signed receipt as the job's consumer received it.")

    @extend_schema_serializer(component_name="ReceiptCheck")
    class OutputSerializer(serializers.Serializer[Any]):
        job_id = serializers.CharField()
        custodian = serializers.CharField()
        recorded_block = serializers.IntegerField()
        settled_block = serializers.IntegerField()
        custodian_valid_from = serializers.IntegerField()
        custodian_valid_until = serializers.IntegerField(allow_null=True)
        batch_id = serializers.IntegerField(
            allow_null=True,
            help_text="The batch that settled the job (its proof checked on chain); null if settled alone.",
        )

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
        "attestation hash is the receipt's SHA-256. A receipt settled in a batch carries `batch` (its id and "
        "Merkle proof): its leaf, recomputed from the receipt, must prove against the batch's root on chain "
        "(verifyReceipt), and the batch's BatchSettled must name the job.",
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        check = receipt_verify(receipt=body.validated_data["receipt"])
        return Response(self.OutputSerializer(asdict(check)).data)


# ISSUE-15: the auditor's list of jobs, public parts only (dataspace/audit/selectors.py says which).
JOB_STATES = [s.value for s in Job.Status]


class IsAuditorOrProvider(BasePermission):
    message = "This endpoint is for auditors (every job) and data providers (the jobs on their datasets)."
    code = "role_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.has_role(Role.AUDITOR) or user.has_role(Role.PROVIDER)))


class AuditJobTransactionsSerializer(serializers.Serializer[Job]):
    record_usage = ChainWriteSerializer(source="record_tx", allow_null=True)
    settle = ChainWriteSerializer(
        source="settlement_tx", allow_null=True, help_text="The job's settle write, or its batch's settleBatch."
    )
    refund = ChainWriteSerializer(source="refund_tx", allow_null=True)


class AuditJobOutputSerializer(serializers.ModelSerializer[Job]):
    agreement = serializers.UUIDField(source="agreement_id")
    chain_agreement_id = serializers.IntegerField(source="agreement.chain_agreement_id", allow_null=True)
    chain_offer_id = serializers.IntegerField(source="agreement.offer.chain_offer_id", allow_null=True)
    dataset = serializers.UUIDField(source="dataset_id")
    dataset_title = serializers.CharField(source="dataset.title")
    price = serializers.SerializerMethodField(help_text="The offer's price per call, token base units.")
    timestamps = serializers.SerializerMethodField()
    transactions = AuditJobTransactionsSerializer(source="*")
    receipt = serializers.SerializerMethodField(
        help_text="The custodian's signed receipt without `result_salt` (the consumer shares it to let "
        "you recompute the result commitment); null until settled or withheld."
    )
    failure_code = serializers.CharField()
    status = serializers.CharField(help_text="The job's state (as in /api/jobs/).")

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "agreement",
            "chain_agreement_id",
            "chain_offer_id",
            "dataset",
            "dataset_title",
            "operation",
            "purpose",
            "epsilon",
            "price",
            "chain_job_id",
            "signed_by_platform",
            "timestamps",
            "transactions",
            "result_hash",
            "receipt",
            "failure_code",
        ]

    def get_price(self, job: Job) -> str:
        return str(job.agreement.offer.price_per_call)

    def get_timestamps(self, job: Job) -> dict[str, str | None]:
        return {s: (value.isoformat() if (value := getattr(job, f"{s}_at")) else None) for s in JOB_STATES}

    def get_receipt(self, job: Job) -> dict[str, Any] | None:
        return selectors.public_receipt(job)


class AuditJobListApi(APIView):
    permission_classes = [IsAuditorOrProvider]

    class FilterSerializer(serializers.Serializer[Any]):
        dataset = serializers.UUIDField(required=False)
        agreement = serializers.UUIDField(required=False)
        chain_job_id = serializers.RegexField(r"^0x[0-9a-fA-F]{64}$", required=False, help_text="The job id on chain.")
        # A plain string checked here rather than a ChoiceField: the schema would otherwise grow a
        # second enum named for "status" beside the jobs' own.
        status = serializers.CharField(required=False, help_text=f"One of: {', '.join(JOB_STATES)}.")

        def validate_status(self, value: str) -> str:
            if value not in JOB_STATES:
                raise serializers.ValidationError(f"Not a job state; one of: {', '.join(JOB_STATES)}.")
            return value

    @extend_schema(
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={
            200: paginated(AuditJobOutputSerializer),
            **error_responses(*ERRORS_COMMON, ErrorCode.ROLE_REQUIRED),
        },
        description="Jobs, public parts only: ids, states and their times, chain job id and transactions, "
        "hashes, the receipt without its salt; never the result. Auditors see every job, providers "
        "the jobs on their datasets. Newest first.",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        v = filters.validated_data
        jobs = selectors.audit_job_list(
            user=request_user(request),
            dataset_id=v.get("dataset"),
            agreement_id=v.get("agreement"),
            status=v.get("status"),
            chain_job_id=v.get("chain_job_id"),
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(AuditJobOutputSerializer(page, many=True).data)


class AuditJobDetailApi(APIView):
    permission_classes = [IsAuditorOrProvider]

    @extend_schema(
        responses={
            200: AuditJobOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND),
        },
        description="One job's public parts (as in the list).",
    )
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        job = selectors.audit_job_get(user=request_user(request), job_id=job_id)
        return Response(AuditJobOutputSerializer(job).data)
