from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from dataspace.vault import services


class Command(BaseCommand):
    help = "Vault operations: rotate-kek re-wraps every data key under a new key-encryption key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        rotate = sub.add_parser("rotate-kek", help="make a new KEK active and re-wrap all data keys")
        rotate.add_argument(
            "--rewrap-only",
            action="store_true",
            help="do not create a KEK (env provider, or resuming); re-wrap keys under the active one",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rotate-kek":
            report = services.kek_rotate(create_new=not options["rewrap_only"])
            self.stdout.write(f"active KEK {report.active_kek_id}; re-wrapped {report.rewrapped} data keys")
