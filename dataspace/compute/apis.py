"""Jobs: ask for a permitted computation, follow it, read its result once settled on chain."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsConsumer, request_user
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.catalog import selectors as catalog_selectors
from dataspace.catalog.public_profile import approximate_count
from dataspace.chain.serializers import ChainWriteSerializer
from dataspace.compute import job_requests, selectors
from dataspace.compute.he.operations import REGISTRY
from dataspace.compute.he.view import public_view
from dataspace.compute.models import EncryptedStore, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.operation_names import OperationName
from dataspace.parsers import StrictInputSerializer, uint256_or_refuse
from dataspace.policies import selectors as policy_selectors

JOB_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.NOT_FOUND,
    ErrorCode.AGREEMENT_NOT_ACTIVE,
    ErrorCode.AGREEMENT_EXPIRED,
    ErrorCode.POLICY_INVALID,  # ISSUE-14
    ErrorCode.PURPOSE_NOT_ALLOWED,
    ErrorCode.OPERATION_NOT_ALLOWED,
    ErrorCode.INVALID_OPERATION,
    ErrorCode.CALLS_EXHAUSTED,
    ErrorCode.BUDGET_EXHAUSTED,
    ErrorCode.EPSILON_INVALID,
    ErrorCode.COLUMN_NOT_PUBLIC,
    ErrorCode.SIGNATURE_INVALID,
    ErrorCode.SIGNATURE_REPLAYED,
    ErrorCode.SIGNATURE_EXPIRED,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ErrorCode.ENCRYPTED_STORE_NOT_READY,
    ErrorCode.WALLET_REQUIRED,
    ErrorCode.ALGORITHM_NOT_APPROVED,  # ISSUE-13
    ErrorCode.SANDBOX_NOT_ALLOWED,
)
STATES = ["requested", "authorised", "computed", "released", "settled", "withheld", "rejected", "failed", "refunded"]


class JobTransactionsSerializer(serializers.Serializer[Job]):
    record_usage = ChainWriteSerializer(source="record_tx", allow_null=True)
    settle = ChainWriteSerializer(
        source="settlement_tx", allow_null=True, help_text="The job's settle write, or its batch's settleBatch."
    )
    refund = ChainWriteSerializer(source="refund_tx", allow_null=True)


class JobOutputSerializer(serializers.ModelSerializer[Job]):
    timestamps = serializers.SerializerMethodField()
    transactions = JobTransactionsSerializer(source="*")
    params = serializers.JSONField(source="request_params", help_text="The parameters as you sent them.")
    result = serializers.SerializerMethodField(help_text="Present once the job is settled on chain.")
    error_bounds = serializers.SerializerMethodField(
        help_text="Beside each released number, the half-width of a 95% interval of the noise added to it "
        "(null where no noise was added)."
    )
    receipt = serializers.SerializerMethodField(
        help_text="The custodian's signed receipt, once settled (or withheld): mechanism, epsilon, delta, "
        "error bounds, the salted result commitment. A job settled in a batch also carries `batch` (not "
        "signed; the chain proves it): the batch id and root, the job's receipt leaf and its Merkle proof."
    )
    failure = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    tee = serializers.SerializerMethodField(  # ISSUE-13
        help_text="For an algorithm job once it ran: the TEE type and its label (SIMULATED for the local sandbox, "
        "never hardware), the measurement, the attestation hash and the meters."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "url",
            "status",
            "agreement",
            "dataset",
            "operation",
            "params",
            "purpose",
            "epsilon",
            "chain_job_id",
            "signed_by_platform",
            "timestamps",
            "transactions",
            "result",
            "error_bounds",
            "result_hash",
            "receipt",
            "failure",
            "tee",
        ]

    def get_url(self, job: Job) -> str:
        return f"/api/jobs/{job.id}/"

    def get_timestamps(self, job: Job) -> dict[str, str | None]:
        return {state: (value.isoformat() if (value := getattr(job, f"{state}_at")) else None) for state in STATES}

    def get_result(self, job: Job) -> Any:
        # Invariant 2: the answer is readable only once the chain holds the use and its result hash.
        return job.result if job.status == Job.Status.SETTLED else None

    def get_error_bounds(self, job: Job) -> Any:
        if job.status != Job.Status.SETTLED or job.receipt is None:
            return None
        return job.receipt.get("noise", {}).get("error_bounds_95")

    def get_receipt(self, job: Job) -> Any:
        return selectors.job_receipt(job)

    def get_tee(self, job: Job) -> dict[str, Any] | None:
        run = job.tee_run
        if not run:
            return None
        keys = ("tee_type", "label", "measurement", "attestation_hash", "metering")
        return {key: run.get(key) for key in keys}

    def get_failure(self, job: Job) -> dict[str, str] | None:
        if not job.failure_code:
            return None
        return {"code": job.failure_code, "message": job.failure_message}


class OperationOutputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    description = serializers.CharField()
    engine = serializers.ChoiceField(
        choices=["he", "tee"], help_text="he: over ciphertexts; tee: an approved algorithm in a TEE (ISSUE-13)."
    )
    depth = serializers.IntegerField(allow_null=True, help_text="Multiplicative depth of its HE plan (null: tee).")
    parameters = serializers.JSONField(help_text="The job's params, as a JSON Schema object.")
    output = serializers.CharField()
    precision_significant_digits = serializers.IntegerField(
        allow_null=True, help_text="Significant digits of every released number (null: tee, as the algorithm gives)."
    )


class EncryptedStoreOutputSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    stored_bytes = serializers.IntegerField(required=False)
    rows = serializers.IntegerField(required=False, help_text="Exact for the provider, rounded for others.")
    rows_exact = serializers.BooleanField(required=False)
    columns = serializers.JSONField(required=False)
    parameters = serializers.JSONField(required=False)


class JobListCreateApi(APIView):
    permission_classes = [IsConsumer]

    @extend_schema_serializer(component_name="JobCreate")
    class InputSerializer(StrictInputSerializer):  # ISSUE-14: unknown fields refused
        agreement = serializers.UUIDField()
        operation = serializers.CharField(max_length=64)
        params = serializers.DictField(required=False, default=dict)
        purpose = serializers.CharField(max_length=64)
        epsilon = serializers.FloatField(min_value=0, max_value=1000, default=0.0)
        nonce = serializers.IntegerField(
            min_value=1, validators=[uint256_or_refuse], required=False, help_text="Own-wallet consumers only."
        )
        deadline = serializers.IntegerField(min_value=0, required=False, help_text="Own-wallet consumers only.")
        signature = serializers.RegexField(
            r"^0x[0-9a-fA-F]{130}$", required=False, help_text="EIP-712 Usage signature (own-wallet consumers)."
        )

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: paginated(JobOutputSerializer), **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED)},
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.job_list(consumer=request_user(request))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="A retry with the same key returns the same job (200) instead of a new one.",
            )
        ],
        responses={202: JobOutputSerializer, 200: JobOutputSerializer, **error_responses(*JOB_ERRORS)},
        description="Ask for a permitted computation. The policy is checked and a call reserved now; the "
        "use is recorded on chain (signed by you, or by the platform for a custodial wallet), computed "
        "over ciphertexts, released by the key custodian and settled on chain. Poll the job URL.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = request.headers.get("Idempotency-Key") or job_requests.new_idempotency_key()
        if len(key) > 128:
            raise DomainError("The Idempotency-Key header is longer than 128 characters.")
        job, created = job_requests.job_request(
            consumer=request_user(request),
            request=job_requests.JobRequest(
                agreement_id=v["agreement"],
                operation=v["operation"],
                params=v["params"],
                purpose=v["purpose"],
                epsilon=v["epsilon"],
                idempotency_key=key,
                nonce=v.get("nonce"),
                deadline=v.get("deadline"),
                signature=v.get("signature"),
            ),
        )
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(JobOutputSerializer(job).data, status=code, headers={"Location": f"/api/jobs/{job.id}/"})


# ISSUE-16: an own-wallet consumer (the SDK) asks what to sign; nothing is reserved.
class JobUsageApi(APIView):
    permission_classes = [IsConsumer]

    @extend_schema_serializer(component_name="JobUsageRequest")
    class InputSerializer(StrictInputSerializer):  # ISSUE-14: unknown fields refused
        agreement = serializers.UUIDField()
        operation = serializers.CharField(max_length=64)
        params = serializers.DictField(required=False, default=dict)
        purpose = serializers.CharField(max_length=64)
        epsilon = serializers.FloatField(min_value=0, max_value=1000, default=0.0)
        nonce = serializers.IntegerField(min_value=1, validators=[uint256_or_refuse])  # ISSUE-14: uint256
        deadline = serializers.IntegerField(min_value=0)

    @extend_schema_serializer(component_name="JobUsageToSign")
    class OutputSerializer(serializers.Serializer[Any]):
        typed_data = serializers.JSONField(help_text="The EIP-712 Usage document to sign (bytes as 0x hex).")

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(*JOB_ERRORS)},
        description="Own-wallet consumers: the EIP-712 Usage message to sign for this request, after every "
        "check POST /api/jobs/ makes (nothing is reserved). Recompute its fields, sign it, then POST the job "
        "with nonce, deadline and signature.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        typed_data = job_requests.usage_to_sign(
            consumer=request_user(request),
            request=job_requests.JobRequest(
                agreement_id=v["agreement"],
                operation=v["operation"],
                params=v["params"],
                purpose=v["purpose"],
                epsilon=v["epsilon"],
                idempotency_key="",
                nonce=v["nonce"],
                deadline=v["deadline"],
            ),
        )
        return Response({"typed_data": typed_data})


class JobDetailApi(APIView):
    permission_classes = [IsConsumer]

    @extend_schema(
        responses={
            200: JobOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND),
        }
    )
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        return Response(JobOutputSerializer(selectors.job_get(consumer=request_user(request), job_id=job_id)).data)


class OperationListApi(APIView):
    @extend_schema(
        responses={200: OperationOutputSerializer(many=True), **error_responses(*ERRORS_AUTH)},
        description="The operations an offer can allow and a job can ask for: the HE operations (inputs, "
        "multiplicative depth, output shape, precision) and ``algorithm`` (an approved algorithm in a TEE).",
    )
    def get(self, request: Request) -> Response:
        listed: list[dict[str, Any]] = [
            {
                "name": op.name,
                "engine": "he",
                "description": op.description,
                "depth": op.depth,
                "parameters": op.parameters,
                "output": op.output,
                "precision_significant_digits": op.precision,
            }
            for op in REGISTRY.values()
        ]
        listed.append(
            {
                "name": OperationName.ALGORITHM.value,
                "engine": "tee",
                "description": job_requests.ALGORITHM_DESCRIPTION,
                "depth": None,
                "parameters": job_requests.ALGORITHM_PARAMETERS,
                "output": job_requests.ALGORITHM_OUTPUT,
                "precision_significant_digits": None,
            }
        )
        return Response(OperationOutputSerializer(listed, many=True).data)


class EncryptedStoreApi(APIView):
    @extend_schema(
        responses={200: EncryptedStoreOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)},
        description="What can be computed on a dataset: its encrypted columns, their level (sums or "
        "products), categories and bucket edges, and the CKKS parameters with their security level.",
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = catalog_selectors.dataset_get(dataset_id=dataset_id)
        store = selectors.encrypted_store_get(dataset_id=dataset.id)
        if store is None:
            return Response({"status": "not built"})
        body: dict[str, Any] = {"status": store.status, "stored_bytes": store.stored_bytes}
        if store.status == EncryptedStore.Status.READY:
            layout = selectors.encrypted_store_layout(store)
            # Others see what the public profile shows: rounded rows, category names only where
            # the provider made them public; bucket edges only once they hold an agreement (the
            # edges are the provider's own or private quantiles, still facts about the data).
            owner = dataset.provider_id == request.user.pk
            body["rows"] = layout.rows if owner else approximate_count(layout.rows)
            body["rows_exact"] = owner
            body["columns"] = public_view(layout, values_of=None if owner else dataset.public_value_columns)
            if not owner and not policy_selectors.holds_agreement_on(
                consumer=request_user(request), dataset_id=dataset.id
            ):
                for column in body["columns"]:
                    column.pop("bucket_edges", None)
            body["parameters"] = {
                level: {
                    "poly_modulus_degree": p.poly_modulus_degree,
                    "coeff_mod_bit_sizes": list(p.coeff_mod_bit_sizes),
                    "scale_bits": p.scale_bits,
                    "multiplicative_depth": p.depth,
                    "security_bits": p.security_bits,
                }
                for level, p in ((level, layout.param_set(level)) for level in sorted(layout.levels()))
            }
        return Response(body)
