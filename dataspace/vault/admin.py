from django.contrib import admin

from dataspace.vault.models import DataKey


@admin.register(DataKey)
class DataKeyAdmin(admin.ModelAdmin[DataKey]):
    list_display = ("id", "purpose", "kek_id", "created_at", "rewrapped_at")
    exclude = ("wrapped_key",)
    readonly_fields = ("purpose", "kek_id")
