from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "dataspace.policies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dataspace.catalog.signals import dataset_delete_check
        from dataspace.policies import receivers

        dataset_delete_check.connect(receivers.keep_datasets_with_offers, dispatch_uid="policies.keep_datasets")
