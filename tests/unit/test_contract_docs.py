"""The contracts document themselves: every function, event and error of their interfaces carries
NatSpec (a notice, each parameter, each return value), the implementations inherit it, and each
error is declared once in contracts/src.

Read from the compiler's metadata in the Foundry artifacts (``contracts/forge.sh build``)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from dataspace.chain import artifacts

pytestmark = pytest.mark.smoke

SOURCES = Path(__file__).resolve().parents[2] / "contracts" / "src"
INTERFACES = ("IRedlakeErrors", "IDatasetRegistry", "IUsageAgreements", "ICustodianRegistry")
IMPLEMENTATIONS = {
    "DatasetRegistry": "IDatasetRegistry",
    "UsageAgreements": "IUsageAgreements",
    "CustodianRegistry": "ICustodianRegistry",
}


def _artifact(name: str) -> dict[str, Any]:
    path = Path(settings.CONTRACTS_OUT_DIR) / f"{name}.sol" / f"{name}.json"
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def _natspec(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contract's (userdoc, devdoc): forge's parsed `metadata` drops events and errors, the
    compiler's own `rawMetadata` keeps them."""
    output = json.loads(_artifact(name)["rawMetadata"])["output"]
    return output["userdoc"], output["devdoc"]


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(artifacts.abi_type(i) for i in item['inputs'])})"


def _undocumented(name: str) -> list[str]:
    userdoc, devdoc = _natspec(name)
    sections = {"function": "methods", "event": "events", "error": "errors"}
    missing = []
    for item in _artifact(name)["abi"]:
        section = sections.get(item["type"])
        if section is None:
            continue
        signature = _signature(item)
        user = userdoc.get(section, {}).get(signature)
        dev = devdoc.get(section, {}).get(signature, {})
        if section == "errors":  # errors can share a signature across contracts, so they are lists
            user, dev = (user or [{}])[0], (dev or [{}])[0]
        if not (user or {}).get("notice"):
            missing.append(f"{signature}: @notice")
        params = dev.get("params", {})
        missing += [f"{signature}: @param {i['name']}" for i in item["inputs"] if i["name"] not in params]
        returns = dev.get("returns", {})
        for n, output in enumerate(item.get("outputs", [])):
            if (output["name"] or f"_{n}") not in returns:
                missing.append(f"{signature}: @return {output['name'] or n}")
    return missing


@pytest.mark.parametrize("name", INTERFACES)
def test_interface_documents_every_function_event_and_error(name: str) -> None:
    assert _undocumented(name) == []


@pytest.mark.parametrize(("implementation", "interface"), IMPLEMENTATIONS.items())
def test_implementation_inherits_its_interface_docs(implementation: str, interface: str) -> None:
    own, _ = _natspec(implementation)
    declared, _ = _natspec(interface)
    assert {s: own["methods"].get(s) for s in declared["methods"]} == declared["methods"]
    # Revert decoding reads the implementation's ABI: every error of the interface must be in it.
    errors = {_signature(i) for i in _artifact(implementation)["abi"] if i["type"] == "error"}
    assert {_signature(i) for i in _artifact(interface)["abi"] if i["type"] == "error"} <= errors


def test_each_error_is_declared_once() -> None:
    declared = Counter(
        name for path in SOURCES.glob("*.sol") for name in re.findall(r"^\s*error (\w+)\(", path.read_text(), re.M)
    )
    assert declared
    assert [name for name, count in declared.items() if count > 1] == []
