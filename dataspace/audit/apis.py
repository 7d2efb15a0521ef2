"""The auditor's door on the platform: the reconciliation report (the chain itself is the other)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsAuditor
from dataspace.api_docs import ERRORS_AUTH, error_responses
from dataspace.audit.reconcile import reconcile
from dataspace.errors import ErrorCode


class ReconcileOutputSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField()
    checked = serializers.DictField(child=serializers.IntegerField())
    mismatches = serializers.ListField(child=serializers.CharField())


class ReconcileApi(APIView):
    permission_classes = [IsAuditor]

    @extend_schema(
        responses={
            200: ReconcileOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.CHAIN_UNAVAILABLE),
        },
        description="Chain events and contract state against the platform's records, both ways: every "
        "use, settlement, refund, agreement and offer. The same report as `manage.py audit reconcile`.",
    )
    def get(self, request: Request) -> Response:
        return Response(reconcile().as_dict())
