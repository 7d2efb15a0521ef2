"""``manage.py audit reconcile``: chain and database, compared both ways. Exit status 1 on any
difference, so it can gate a deployment or page someone."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dataspace.audit.services import reconcile_run


class Command(BaseCommand):
    help = "Audit commands: reconcile (chain events and views against the platform's records)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["reconcile"])
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = reconcile_run()
        if options["json"]:
            body = {"ok": report.ok, "checked": report.checked, "mismatches": report.mismatches}
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for name, count in sorted(report.checked.items()):
                self.stdout.write(f"checked {count:>6} {name}")
            for line in report.mismatches:
                self.stdout.write(self.style.ERROR(f"MISMATCH {line}"))
            self.stdout.write(self.style.SUCCESS("chain and database agree") if report.ok else "")
        if not report.ok:
            raise CommandError(f"{len(report.mismatches)} differences between chain and database")
