from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "dataspace.policies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dataspace.catalog.signals import dataset_change_check
        from dataspace.policies import receivers

        dataset_change_check.connect(receivers.keep_terms_of_datasets_with_offers, dispatch_uid="policies.keep_terms")
