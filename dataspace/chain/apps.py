from django.apps import AppConfig


class ChainConfig(AppConfig):
    name = "dataspace.chain"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dataspace.chain import checks  # noqa: F401 - registers the system checks
