"""Deployment checks for the chain settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register(deploy=True)
def operator_key_is_not_a_development_key(**_: Any) -> list[Error]:
    # anvil's first key is public knowledge: on any real chain its funds belong to everyone.
    if settings.CHAIN_OPERATOR_KEY == settings.ANVIL_DEV_KEY and settings.CHAIN_ID != 31337:
        return [
            Error(
                "CHAIN_OPERATOR_KEY is anvil's public development key on a non-development chain.",
                hint="Set CHAIN_OPERATOR_KEY to the private key of the space's own funded operator account.",
                id="redlake.E001",
            )
        ]
    return []
