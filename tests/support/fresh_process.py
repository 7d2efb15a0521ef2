"""Running test code in a process started fresh (spawned), where Django is not set up yet."""

from __future__ import annotations

from importlib import import_module
from typing import Any


def call_with_django(target: str, *args: Any) -> Any:
    """Sets Django up, then calls ``target`` ("package.module:function") with ``args``. Pass
    this, not the function, to a spawned process: unpickling a function imports its module,
    and a test module imports models, which needs Django set up first."""
    import django

    django.setup()
    module, name = target.split(":")
    return getattr(import_module(module), name)(*args)
