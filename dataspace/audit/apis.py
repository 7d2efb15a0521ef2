"""The auditor's door on the platform: the reconciliation report (the chain itself is the other)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsAuditor
from dataspace.api_docs import ERRORS_AUTH, error_responses
from dataspace.audit import services
from dataspace.audit.models import ReconcileReport
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
