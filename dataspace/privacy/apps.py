from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """Differential privacy: the accountant (OpenDP, zCDP), the ledger, the mechanisms, and each
    dataset's terms pinned on chain."""

    name = "dataspace.privacy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dataspace.catalog.signals import dataset_ingested, dataset_privacy_changed
        from dataspace.privacy import receivers

        dataset_ingested.connect(receivers.pin_dataset_terms, dispatch_uid="privacy.pin_new_dataset")
        dataset_privacy_changed.connect(receivers.pin_dataset_terms, dispatch_uid="privacy.pin_changed_terms")
