"""ISSUE-13: algorithms for TEE jobs: consumers submit, providers read the code and decide."""

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
from dataspace.api_docs import ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.chain.serializers import ChainWriteSerializer
from dataspace.compute import algorithms
from dataspace.compute.models import Algorithm
from dataspace.errors import ErrorCode
from dataspace.policies import selectors as policy_selectors

SUBMIT_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.NOT_FOUND,
    ErrorCode.OFFER_NOT_PUBLISHED,
    ErrorCode.OPERATION_NOT_ALLOWED,
    ErrorCode.ALGORITHM_INVALID,
)
DECIDE_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.NOT_FOUND,
    ErrorCode.ALGORITHM_STATE_INVALID,
    ErrorCode.SANDBOX_NOT_ALLOWED,
    ErrorCode.WALLET_REQUIRED,
)


class AlgorithmOutputSerializer(serializers.ModelSerializer[Algorithm]):
    consumer = serializers.CharField(source="consumer.username")
    bundle = serializers.SerializerMethodField(help_text="The canonical bundle: the code the provider approves.")
    approve_tx = ChainWriteSerializer(allow_null=True)
    revoke_tx = ChainWriteSerializer(allow_null=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Algorithm
        fields = [
            "id",
            "url",
            "offer",
            "consumer",
            "name",
            "kind",
            "bundle",
            "bundle_sha256",
            "measurement",
            "status",
            "reason",
            "approve_tx",
            "revoke_tx",
            "created_at",
            "decided_at",
        ]

    def get_bundle(self, algorithm: Algorithm) -> Any:
        import json

        return json.loads(algorithm.bundle)

    def get_url(self, algorithm: Algorithm) -> str:
        return f"/api/algorithms/{algorithm.id}/"


class AlgorithmListCreateApi(APIView):
    @extend_schema_serializer(component_name="AlgorithmCreate")
    class InputSerializer(serializers.Serializer[Any]):
        offer = serializers.UUIDField()
        name = serializers.CharField(max_length=200, required=False, default="")
        kind = serializers.ChoiceField(choices=["python", "sql"])
        source = serializers.CharField(max_length=256 * 1024, trim_whitespace=False)  # type: ignore[assignment]
        lockfile = serializers.DictField(child=serializers.CharField(max_length=64), required=False, default=dict)
        output_schema = serializers.DictField()
        max_output_bytes = serializers.IntegerField(min_value=1)

    def get_permissions(self) -> list[Any]:
        return [IsConsumer()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: paginated(AlgorithmOutputSerializer), **error_responses(*ERRORS_COMMON)},
        description="The algorithms you submitted, and those submitted for your offers (with their code).",
    )
    def get(self, request: Request) -> Response:
        queryset = algorithms.algorithm_list(viewer=request_user(request))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(AlgorithmOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: AlgorithmOutputSerializer, **error_responses(*SUBMIT_ERRORS)},
        description="Submit an algorithm for an offer that allows the operation `algorithm`: a Python module "
        "defining `run(tables, params)` (with a lockfile of the worker runtime's packages) or a DuckDB SQL "
        "template over the table `data`; its output schema and maximum output size. Its measurement "
        "(bundle + sandbox profile) is what the provider approves.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        offer = policy_selectors.offer_get(viewer=request_user(request), offer_id=v.pop("offer"))
        algorithm = algorithms.algorithm_submit(consumer=request_user(request), offer=offer, document=v)
        return Response(AlgorithmOutputSerializer(algorithm).data, status=status.HTTP_201_CREATED)


class AlgorithmDetailApi(APIView):
    @extend_schema(responses={200: AlgorithmOutputSerializer, **error_responses(*ERRORS_COMMON, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, algorithm_id: uuid.UUID) -> Response:
        algorithm = algorithms.algorithm_get(viewer=request_user(request), algorithm_id=algorithm_id)
        return Response(AlgorithmOutputSerializer(algorithm).data)


class AlgorithmDecisionApi(APIView):
    """approve / reject / revoke, by the offer's provider."""

    permission_classes = [IsProvider]
    action = ""

    class InputSerializer(serializers.Serializer[Any]):
        # Blank is no reason given (the portal sends "" with approve and revoke).
        reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)

    @extend_schema(
        request=InputSerializer,
        responses={202: AlgorithmOutputSerializer, **error_responses(*DECIDE_ERRORS)},
        description="approve: pins the measurement on chain (AlgorithmApprovals.approve from your wallet); "
        "usable once `status` is approved. reject: refuses it. revoke: AlgorithmApprovals.revoke; the "
        "algorithm's queued jobs are refunded.",
    )
    def post(self, request: Request, algorithm_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        provider = request_user(request)
        if self.action == "approve":
            algorithm = algorithms.algorithm_approve(provider=provider, algorithm_id=algorithm_id)
        elif self.action == "reject":
            algorithm = algorithms.algorithm_reject(
                provider=provider, algorithm_id=algorithm_id, reason=data.validated_data["reason"]
            )
        else:
            algorithm = algorithms.algorithm_revoke(provider=provider, algorithm_id=algorithm_id)
        return Response(AlgorithmOutputSerializer(algorithm).data, status=status.HTTP_202_ACCEPTED)
