from django.contrib import admin

from dataspace.catalog.models import Dataset, Ingest


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin[Dataset]):
    list_display = ("title", "provider", "file_format", "row_count", "created_at")
    search_fields = ("title", "description")
    readonly_fields = ("content_sha256", "blob_name", "data_key", "schema", "row_count", "size_bytes")


@admin.register(Ingest)
class IngestAdmin(admin.ModelAdmin[Ingest]):
    list_display = ("file_name", "provider", "status", "progress", "error_code", "created_at")
    list_filter = ("status",)
    readonly_fields = ("content_sha256", "blob_name", "data_key")
