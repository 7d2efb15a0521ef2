from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from dataspace.accounts.models import User, Wallet


@admin.register(User)
class RedlakeUserAdmin(UserAdmin[User]):
    list_display = ("username", "email", "is_provider", "is_consumer", "is_auditor", "is_staff")
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Roles", {"fields": ("is_provider", "is_consumer", "is_auditor")}))


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin[Wallet]):
    list_display = ("user", "kind", "address", "created_at")
    # The sealed key is never shown, not even to operators.
    exclude = ("sealed_private_key", "data_key")
    readonly_fields = ("user", "kind", "address")
