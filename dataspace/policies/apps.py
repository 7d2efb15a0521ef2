from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "dataspace.policies"
    default_auto_field = "django.db.models.BigAutoField"
