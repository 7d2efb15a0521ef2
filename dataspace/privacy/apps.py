from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """Differential privacy: the accountant (OpenDP, zCDP), the ledger, the mechanisms."""

    name = "dataspace.privacy"
    default_auto_field = "django.db.models.BigAutoField"
