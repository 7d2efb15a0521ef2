from django.apps import AppConfig


class ComputeConfig(AppConfig):
    name = "dataspace.compute"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dataspace.catalog.signals import dataset_deleting, dataset_ingested
        from dataspace.chain.signals import custodian_address_query
        from dataspace.compute import checks, receivers  # noqa: F401 - checks register themselves

        dataset_ingested.connect(receivers.build_encrypted_store, dispatch_uid="compute.build_encrypted_store")
        dataset_deleting.connect(receivers.delete_encrypted_store, dispatch_uid="compute.delete_encrypted_store")
        # ISSUE-12: the deploy registers the custodian's receipt address in CustodianRegistry.
        custodian_address_query.connect(receivers.custodian_receipt_address, dispatch_uid="compute.custodian_address")
