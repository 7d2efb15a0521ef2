from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dataspace.roles import Keyring
from dataspace.vault import keyrings, services


class Command(BaseCommand):
    help = (
        "Vault operations: rotate-kek re-wraps what one keyring's root key wraps under a new root; "
        "init-keyrings creates the root keys of the keyrings this process holds (in an HSM token, once); "
        "export-public prints a keyring's public half (PEM) for the processes that only seal."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        names = [k.value for k in Keyring]
        rotate = sub.add_parser("rotate-kek", help="make a new root key active and re-wrap what it wraps")
        rotate.add_argument(
            "--keyring",
            choices=[*names, "all"],
            default="all",
            help="which root key (data, ckks, wallet, receipt); default: every keyring this process holds",
        )
        rotate.add_argument(
            "--rewrap-only",
            action="store_true",
            help="do not create a root key (env backend, or resuming); re-wrap keys under the active one",
        )
        init = sub.add_parser("init-keyrings", help="create a root key where a held keyring has none")
        init.add_argument("--keyring", choices=[*names, "all"], default="all")
        export = sub.add_parser("export-public", help="print a keyring's active public half as PEM")
        export.add_argument("--keyring", choices=names, required=True)

    def _selected(self, choice: str) -> list[Keyring]:
        if choice != "all":
            return [Keyring(choice)]
        held = [k for k in Keyring if services.held_spec(k)]
        if not held:
            raise CommandError(f"role {settings.REDLAKE_ROLE!r} holds no keyring")
        return held

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "rotate-kek":
                for name in self._selected(options["keyring"]):
                    report = services.kek_rotate(keyring=name, create_new=not options["rewrap_only"])
                    self.stdout.write(
                        f"{report.keyring}: active root key {report.active_kek_id}; "
                        f"re-wrapped {report.rewrapped} data keys"
                    )
            elif action == "init-keyrings":
                for name in self._selected(options["keyring"]):
                    ring = keyrings.keyring_from_spec(services.held_spec(name), create=True)
                    self.stdout.write(f"{name.value}: active root key {ring.active_id()}")
            elif action == "export-public":
                ring = services.sealing_keyring(Keyring(options["keyring"]))
                self.stdout.write(keyrings.public_key_pem(ring.public_key()).decode(), ending="")
        except services.KeyringUnavailable as exc:
            raise CommandError(exc.message) from None
