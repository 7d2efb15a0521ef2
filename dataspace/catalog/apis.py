"""Catalogue API: browse datasets (metadata only), upload and manage your own, follow ingests."""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dataspace.accounts.permissions import IsProvider, request_user
from dataspace.api_docs import ERRORS_AUTH, ERRORS_COMMON, PAGE_PARAMETERS, error_responses, paginated
from dataspace.catalog import catalogue_cache, dcat, selectors, services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.public_profile import public_profile
from dataspace.catalog.uploads import SealedUpload, discard_unclaimed_uploads, install_sealing_handler
from dataspace.chain.serializers import ChainWriteSerializer
from dataspace.errors import DomainError, ErrorCode
from dataspace.parsers import BoundedJSONField

UPLOAD_ERRORS = (
    *ERRORS_COMMON,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.FILE_MISSING,
    ErrorCode.UNEXPECTED_FILE,
    ErrorCode.TOO_MANY_FIELDS,
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.FILE_TOO_LARGE,
    ErrorCode.FILE_EMPTY,
    ErrorCode.UNSUPPORTED_FORMAT,
    ErrorCode.BINARY_CONTENT,
    ErrorCode.INVALID_ENCODING,
    ErrorCode.MALFORMED_CSV,
    ErrorCode.RAGGED_ROWS,
    ErrorCode.MALFORMED_PARQUET,
    ErrorCode.PARQUET_SCHEMA_MISMATCH,
    ErrorCode.NO_ROWS,
    ErrorCode.DUPLICATE_COLUMN,
    ErrorCode.EMPTY_COLUMN_NAME,
    ErrorCode.INVALID_COLUMN_NAME,
    ErrorCode.TOO_MANY_COLUMNS,
    ErrorCode.UNSUPPORTED_COLUMN_TYPE,
    ErrorCode.COLUMN_NOT_FOUND,  # ISSUE-15: a type correction for a column the file lacks
    ErrorCode.BOUNDS_INVALID,
    ErrorCode.BOUNDS_COLUMN_UNKNOWN,
)


class DatasetOutputSerializer(serializers.ModelSerializer[Dataset]):
    """Public metadata and profile: what any authenticated user may see."""

    provider = serializers.CharField(source="provider.username")
    profile = serializers.SerializerMethodField()
    chain = ChainWriteSerializer(
        source="chain_registration", allow_null=True, help_text="The on-chain registration: status and transaction."
    )

    class Meta:
        model = Dataset
        fields = [
            "id",
            "title",
            "description",
            "keywords",
            "licence",
            "provider",
            "file_format",
            "content_sha256",
            "size_bytes",
            "non_personal",
            "privacy_epsilon",
            "profile",
            "chain",
            "created_at",
            "updated_at",
        ]

    def get_profile(self, dataset: Dataset) -> dict[str, Any]:
        return public_profile(dataset)


class OwnedDatasetOutputSerializer(DatasetOutputSerializer):
    """The provider's own view adds the exact facts they uploaded."""

    class Meta(DatasetOutputSerializer.Meta):
        fields = [*DatasetOutputSerializer.Meta.fields, "row_count", "schema", "public_value_columns"]


class IngestOutputSerializer(serializers.ModelSerializer[Ingest]):
    dataset = serializers.UUIDField(source="dataset_id", allow_null=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Ingest
        fields = [
            "id",
            "status",
            "progress",
            "file_name",
            "file_format",
            "size_bytes",
            "content_sha256",
            "dataset",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_error(self, ingest: Ingest) -> dict[str, str] | None:
        if ingest.status != Ingest.Status.FAILED:
            return None
        return {"code": ingest.error_code, "message": ingest.error_message}


class _KeywordsField(serializers.ListField):
    """Accepts repeated form fields or one comma-separated value."""

    child = serializers.CharField(max_length=64)

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            data = [k.strip() for k in data[0].split(",") if k.strip()]
        return super().to_internal_value(data)


class _PrivacyEpsilonField(serializers.FloatField):
    """A dataset's total epsilon: finite, above zero, at most the space's ceiling."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=None, max_value=None, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        ceiling = settings.PRIVACY_MAX_DATASET_EPSILON
        if not math.isfinite(value) or not 0 < value <= ceiling:
            raise serializers.ValidationError(
                f"A privacy budget is a number above 0 and at most {ceiling:g}.", code=ErrorCode.PRIVACY_TERMS_INVALID
            )
        return value


def _validated_bounds(bounds: Any) -> dict[str, list[float]]:
    """Each column's declared [lo, hi]: two finite numbers, lo below hi. Whether the columns exist
    is checked against the file's header (``ingest_start``)."""
    if not isinstance(bounds, dict):
        raise DomainError('"bounds" must map column names to [lo, hi].', code=ErrorCode.BOUNDS_INVALID)
    for column, pair in bounds.items():
        numbers = (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in pair)
        )
        if not numbers or not pair[0] < pair[1]:
            raise DomainError(
                f"The bounds of {column!r} must be two finite numbers [lo, hi] with lo below hi.",
                code=ErrorCode.BOUNDS_INVALID,
                details={"column": column},
            )
    return {column: [float(pair[0]), float(pair[1])] for column, pair in bounds.items()}


class DatasetListCreateApi(catalogue_cache.StateAlongsideToken, APIView):
    parser_classes = [MultiPartParser]

    class FilterSerializer(serializers.Serializer[Any]):
        search = serializers.CharField(required=False, max_length=200)
        keyword = serializers.CharField(required=False, max_length=64)
        provider = serializers.CharField(required=False, max_length=150)
        format = serializers.ChoiceField(choices=["csv", "parquet"], required=False)
        mine = serializers.BooleanField(required=False, default=False)

    @extend_schema_serializer(component_name="DatasetUpload")
    class InputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(
            allow_empty_file=True, help_text="CSV (UTF-8) or Parquet; streamed and sealed as it arrives."
        )
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")
        keywords = _KeywordsField(required=False, default=list, max_length=32)
        licence = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
        format = serializers.ChoiceField(choices=["csv", "parquet"], required=False)
        delimiter = serializers.ChoiceField(choices=[",", ";", "\t", "|"], required=False, default=",")
        public_value_columns = _KeywordsField(required=False, default=list, max_length=1000)
        non_personal = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Declare that no row describes a person: answers carry no noise and no privacy budget "
            "applies. Pinned on chain with the first offer; irreversible.",
        )
        privacy_epsilon = _PrivacyEpsilonField(
            required=False,
            allow_null=True,
            default=None,
            help_text="The total epsilon (zCDP, at the space's delta) all consumers together may spend on the "
            "dataset; the space's default when left out. Ignored for a non-personal dataset.",
        )
        encryption = BoundedJSONField(
            required=False,
            default=dict,
            binary=True,
            help_text='Encrypted store options, JSON: {"sums_only": [columns stored at the smaller depth-0 '
            'parameters: count/sum/mean/histogram only], "buckets": {column: [ascending edges]}, "bounds": '
            '{column: [lo, hi]}, "group_by": {categorical column: [numeric columns]}}. A declared group-by pair has '
            "its value x category products summed at ingest, so its group-by reads one ciphertext per group. "
            "Every value of a numeric column is clamped to its bounds before it is "
            "encrypted, and the noise on every answer is sized from them; a numeric column without bounds "
            "(and a personal dataset's column without buckets) is stored but its values are never released, "
            "unless the dataset's privacy settings let them be estimated privately. Booleans are bounded [0, 1].",
        )

        # ISSUE-15: the provider's corrections of inferred types; names are checked by the service
        # (a stable `unsupported_column_type` / `column_not_found`), the shape here.
        column_types = BoundedJSONField(
            required=False,
            default=dict,
            binary=True,
            help_text='Corrections of inferred column types, JSON: {column: type}, type one of "integer", '
            '"float", "boolean", "categorical", "date", "text". An unknown type is refused (400 '
            "unsupported_column_type); a correction the whole column cannot be read as fails the ingest, "
            "naming the column (integer codes may become categorical; numbers are never read from text).",
        )

        def validate_column_types(self, value: Any) -> dict[str, str]:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise serializers.ValidationError("Expected an object mapping column names to type names.")
            return value

        def validate_encryption(self, value: Any) -> dict[str, Any]:
            if not isinstance(value, dict) or set(value) - {
                "sums_only",
                "buckets",
                "bounds",
                "estimate_missing",
                "group_by",
            }:
                raise serializers.ValidationError(
                    'Expected an object with "sums_only", "buckets", "bounds", "group_by" and/or "estimate_missing".'
                )
            group_by = value.get("group_by", {})
            if not isinstance(group_by, dict) or not all(
                isinstance(columns, list) and all(isinstance(c, str) for c in columns) for columns in group_by.values()
            ):
                raise serializers.ValidationError('"group_by" must map categorical columns to numeric column lists.')
            if not isinstance(value.get("estimate_missing", False), bool):
                raise serializers.ValidationError('"estimate_missing" must be true or false.')
            sums_only = value.get("sums_only", [])
            if not isinstance(sums_only, list) or not all(isinstance(c, str) for c in sums_only):
                raise serializers.ValidationError('"sums_only" must be a list of column names.')
            buckets = value.get("buckets", {})
            if not isinstance(buckets, dict):
                raise serializers.ValidationError('"buckets" must map column names to edge lists.')
            for column, edges in buckets.items():
                numbers = isinstance(edges, list) and all(isinstance(e, int | float) for e in edges)
                if not numbers or len(edges) < 2 or len(edges) > 65 or sorted(set(edges)) != edges:
                    raise serializers.ValidationError(
                        f"Buckets of {column!r} must be 2 to 65 strictly ascending numbers."
                    )
            return {
                "sums_only": sums_only,
                "buckets": buckets,
                "bounds": _validated_bounds(value.get("bounds", {})),
                "estimate_missing": value.get("estimate_missing", False),
                "group_by": group_by,
            }

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        if request.method == "POST":
            install_sealing_handler(request)
        return super().initialize_request(request, *args, **kwargs)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            discard_unclaimed_uploads(request)

    def get_permissions(self) -> list[Any]:
        return [IsProvider()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={200: paginated(DatasetOutputSerializer), **error_responses(*ERRORS_COMMON)},
        description="The catalogue: metadata and public profiles only. `mine=true` lists your own datasets.",
    )
    def get(self, request: Request) -> HttpResponse:
        f = _catalogue_filters(request.META.get("QUERY_STRING", ""), request._request.encoding)

        def answer() -> Any:
            datasets = selectors.dataset_list(
                search=f.get("search", ""),
                keyword=f.get("keyword", ""),
                provider=f.get("provider", ""),
                file_format=f.get("format", ""),
                owner=request_user(request) if f["mine"] else None,
            )
            paginator = LimitOffsetPagination()
            page = paginator.paginate_queryset(datasets, request, view=self)
            return paginator.get_paginated_response(DatasetOutputSerializer(page, many=True).data).data

        return catalogue_cache.cached_json(request, answer, per_user=f["mine"])

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={202: IngestOutputSerializer, **error_responses(*UPLOAD_ERRORS)},
        description="Upload a dataset. The file is sealed as it streams in; the quick checks run now "
        "(400 on a malformed file), the full validation runs in the background: poll the ingest.",
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if not isinstance(upload, SealedUpload):
            raise DomainError("Attach the dataset in the form field 'file'.", code=ErrorCode.FILE_MISSING)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        ingest = services.ingest_start(
            provider=request_user(request),
            upload=upload,
            metadata=services.DatasetMetadata(
                title=v["title"],
                description=v["description"],
                keywords=v["keywords"],
                licence=v["licence"],
                public_value_columns=v["public_value_columns"],
                non_personal=v["non_personal"],
                privacy_epsilon=v["privacy_epsilon"],
                encryption=v["encryption"],
                column_types=v["column_types"],  # ISSUE-15
            ),
            file_format=v.get("format"),
            delimiter=v["delimiter"],
        )
        return Response(IngestOutputSerializer(ingest).data, status=status.HTTP_202_ACCEPTED)


@functools.lru_cache(maxsize=256)
def _catalogue_filters(query_string: str, encoding: str | None) -> Mapping[str, Any]:
    """The catalogue's filters, validated once per distinct query string in each process: the
    answer depends on the string alone, and a serializer's validation (a deep copy of its fields
    first) cost a tenth of a read. The query dict is built as Django builds ``request.GET``; a
    refused string raises its 400 every time (exceptions are not remembered)."""
    raw = get_bytes_from_wsgi({"QUERY_STRING": query_string}, "QUERY_STRING", "")
    filters = DatasetListCreateApi.FilterSerializer(data=QueryDict(raw, encoding=encoding))
    filters.is_valid(raise_exception=True)
    return MappingProxyType(dict(filters.validated_data))


class DatasetDetailApi(catalogue_cache.StateAlongsideToken, APIView):
    @extend_schema_serializer(component_name="DatasetUpdate")
    class UpdateSerializer(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
        keywords = serializers.ListField(child=serializers.CharField(max_length=64), max_length=32, required=False)
        licence = serializers.CharField(max_length=200, required=False, allow_blank=True)
        public_value_columns = serializers.ListField(child=serializers.CharField(), required=False)
        non_personal = serializers.BooleanField(required=False, help_text="Only true, only before the first offer.")
        privacy_epsilon = _PrivacyEpsilonField(required=False, help_text="Raise the total epsilon; never lowered.")

    def get_permissions(self) -> list[Any]:
        return [IsProvider()] if self.request.method in {"PATCH", "DELETE"} else list(super().get_permissions())

    @extend_schema(responses={200: DatasetOutputSerializer, **error_responses(*ERRORS_AUTH, ErrorCode.NOT_FOUND)})
    def get(self, request: Request, dataset_id: uuid.UUID) -> HttpResponse:
        def answer() -> Any:
            dataset = selectors.dataset_get(dataset_id=dataset_id)
            owned = dataset.provider_id == request.user.pk
            return (OwnedDatasetOutputSerializer if owned else DatasetOutputSerializer)(dataset).data

        # Per user: the provider's own view of a dataset shows more than anyone else's.
        return catalogue_cache.cached_json(request, answer, per_user=True)

    @extend_schema(
        request=UpdateSerializer,
        responses={
            200: OwnedDatasetOutputSerializer,
            **error_responses(
                *ERRORS_COMMON, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND, ErrorCode.PRIVACY_TERMS_LOCKED
            ),
        },
    )
    def patch(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = selectors.dataset_get_owned(owner=request_user(request), dataset_id=dataset_id)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_update(dataset=dataset, **data.validated_data)
        return Response(OwnedDatasetOutputSerializer(dataset).data)

    @extend_schema(
        responses={
            204: None,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
        },
        description="Delete a dataset and crypto-shred its content and encrypted store. A dataset with "
        "offers stays (409): consumers may hold paid agreements on it.",
    )
    def delete(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = selectors.dataset_get_owned(owner=request_user(request), dataset_id=dataset_id)
        services.dataset_delete(dataset=dataset)
        return Response(status=status.HTTP_204_NO_CONTENT)


class IngestListApi(APIView):
    permission_classes = [IsProvider]

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: paginated(IngestOutputSerializer), **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED)},
    )
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.ingest_list(owner=request_user(request)), request, view=self)
        return paginator.get_paginated_response(IngestOutputSerializer(page, many=True).data)


class IngestDetailApi(APIView):
    permission_classes = [IsProvider]

    @extend_schema(
        responses={
            200: IngestOutputSerializer,
            **error_responses(*ERRORS_AUTH, ErrorCode.ROLE_REQUIRED, ErrorCode.NOT_FOUND),
        },
        description="Ingest status and percent done; once succeeded, `dataset` is the new dataset's id.",
    )
    def get(self, request: Request, ingest_id: uuid.UUID) -> Response:
        return Response(
            IngestOutputSerializer(selectors.ingest_get_owned(owner=request_user(request), ingest_id=ingest_id)).data
        )


class CatalogDcatApi(APIView):
    """The DCAT-AP catalogue (JSON-LD): public metadata, for harvesters."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "application/ld+json"): OpenApiTypes.OBJECT})
    def get(self, request: Request) -> JsonResponse:
        datasets = list(selectors.dataset_list())
        return JsonResponse(dcat.catalog_document(datasets), content_type="application/ld+json")


class DatasetDcatApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("dataset_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={(200, "application/ld+json"): OpenApiTypes.OBJECT, **error_responses(ErrorCode.NOT_FOUND)},
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> JsonResponse:
        dataset = selectors.dataset_get(dataset_id=dataset_id)
        return JsonResponse(dcat.dataset_document(dataset), content_type="application/ld+json")
