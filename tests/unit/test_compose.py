"""The compose file's chain (issue 12), read from ``docker-compose config`` (Debian's
docker-compose, which scripts/test.sh installs): the production profile runs a proof-of-authority
client on an internal network with no published port and no debug/admin namespaces, and no
anvil; anvil runs only under the dev profile."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose_env import COMPOSE_SECRETS

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_NAMESPACES = {"ADMIN", "DEBUG", "TXPOOL", "MINER", "QBFT", "IBFT", "CLIQUE", "TRACE", "PERM", "PLUGINS"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install --no-install-recommends docker-compose)")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={**os.environ, **COMPOSE_SECRETS},  # throwaway values, as scripts/test.sh uses
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body: dict[str, Any] = yaml.safe_load(result.stdout)
    return body


def under(compose: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """The services ``docker-compose --profile <profile> up`` starts."""
    return {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or profile in service["profiles"]
    }


def runs_anvil(service: dict[str, Any]) -> bool:
    words = [service.get("image", ""), *(service.get("entrypoint") or []), *(service.get("command") or [])]
    return any("anvil" in str(word) or "foundry" in str(word) for word in words)


def test_production_profile_has_no_anvil(compose: dict[str, Any]) -> None:
    production = under(compose, "production")
    assert [name for name, service in production.items() if runs_anvil(service)] == []
    assert "chain-dev" not in production
    assert "explorer" not in production  # it reads anvil's ots_ API


def test_production_chain_is_a_pinned_poa_client_on_the_internal_network(compose: dict[str, Any]) -> None:
    chain = under(compose, "production")["chain"]
    image, _, tag = chain["image"].partition(":")
    assert image == "hyperledger/besu"
    assert tag not in {"", "latest"}  # pinned to a version
    assert "ports" not in chain
    assert set(chain["networks"]) == {"chain"}
    assert compose["networks"]["chain"]["internal"] is True
    command = " ".join(chain["entrypoint"])
    [apis] = [word.split("=", 1)[1] for word in command.split() if word.startswith("--rpc-http-api=")]
    assert set(apis.split(",")) == {"ETH", "NET", "WEB3"}
    assert not FORBIDDEN_NAMESPACES & set(apis.split(","))
    assert "--rpc-ws-enabled=false" in command


def test_anvil_runs_only_under_the_dev_profile(compose: dict[str, Any]) -> None:
    anvils = {name: service for name, service in compose["services"].items() if runs_anvil(service)}
    assert set(anvils) == {"chain-dev"}
    assert anvils["chain-dev"]["profiles"] == ["dev"]
    assert "chain" in anvils["chain-dev"]["networks"]["chain"]["aliases"]  # the app's CHAIN_RPC_URL host
    # docker-compose 1.29 prints a port as "127.0.0.1:8545:8545/tcp" (newer ones as a mapping).
    ports = anvils["chain-dev"].get("ports", [])
    assert all((port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]) == "127.0.0.1" for port in ports)


def test_app_services_reach_the_chain_network(compose: dict[str, Any]) -> None:
    for name in ("web", "worker-chain", "custodian", "migrate"):
        assert "chain" in compose["services"][name]["networks"], name


# ISSUE-14: health and scaling.
ONE_SHOT = {"chain-genesis", "migrate", "db-roles", "chain-deploy"}


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        disabled = check.get("disable") is True or check.get("test") == ["NONE"]  # compose 1.x spells it so
        if name in ONE_SHOT:
            assert disabled, name
        else:
            assert check.get("test"), f"{name} has no healthcheck"
            assert not disabled, f"{name} has its healthcheck disabled"


def test_the_he_workers_scale_out(compose: dict[str, Any]) -> None:
    # `docker-compose up --scale worker-he=4`: replicas cannot share a container name or a host port.
    worker = compose["services"]["worker-he"]
    assert "container_name" not in worker
    assert not worker.get("ports")
