"""The user's settings and token: one JSON file in the user's config directory, mode 0600."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    if explicit := os.environ.get("REDLAKE_CONFIG_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "redlake"


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def save(values: dict[str, Any]) -> Path:
    """Writes the settings (the token among them) readable by the user only."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = config_path()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def update(**values: Any) -> Path:
    current = load()
    current.update({k: v for k, v in values.items() if v is not None})
    return save(current)


def setting(name: str, env: str, default: Any = None) -> Any:
    """An environment variable wins over the config file."""
    return os.environ.get(env) or load().get(name) or default
