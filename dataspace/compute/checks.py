"""ISSUE-13: deployment check of the process that runs ``tee`` jobs on the sandbox backend."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from dataspace.role_checks import current_role
from dataspace.roles import Role


@register(deploy=True)
def sandbox_host_can_run_tee_jobs(**_: Any) -> list[Error]:
    # The custodian serves the tee queue for the sandbox backend (docker-compose.yml).
    if settings.TEE_BACKEND != "sandbox" or current_role() != Role.CUSTODIAN:
        return []
    from dataspace.compute import tee

    problems = tee.sandbox_host_problems()
    if not problems:
        return []
    return [
        Error(
            "This custodian cannot run sandbox (tee) jobs: " + "; ".join(problems) + ".",
            hint="Fix the host (root, bubblewrap, cgroup controllers, user namespaces) or set TEE_BACKEND "
            "to the space's hardware TEE; a tee worker on this host refuses the tee queue.",
            id="redlake.E013",
        )
    ]
