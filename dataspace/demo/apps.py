from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo users, the synthetic hospital registry and a ready market: what `make run` seeds."""

    name = "dataspace.demo"
    default_auto_field = "django.db.models.BigAutoField"
