from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "dataspace.vault"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # ISSUE-12: a keyring given explicitly (REDLAKE_KEYRING_<NAME>) is opened at startup, so a
        # missing HSM token, a wrong PIN or an unreadable key stops the process before it serves.
        from dataspace.vault import services

        services.keyrings_check_at_startup()
