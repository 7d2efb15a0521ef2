"""Compiled contracts as Foundry writes them (``contracts/out/<Name>.sol/<Name>.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from dataspace.errors import DomainError, ErrorCode


class ArtifactMissing(DomainError):
    """The contracts were not built: the chain cannot be used until they are."""

    code = ErrorCode.CHAIN_UNAVAILABLE


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load(name: str) -> Artifact:
    path = Path(settings.CONTRACTS_OUT_DIR) / f"{name}.sol" / f"{name}.json"
    if not path.exists():
        raise ArtifactMissing(f"{path} not found: build the contracts (make install, or contracts/forge.sh build)")
    body = json.loads(path.read_text())
    bytecode = body["bytecode"]["object"] if isinstance(body["bytecode"], dict) else body["bytecode"]
    return Artifact(name=name, abi=body["abi"], bytecode=bytecode)


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(abi_type(i) for i in item['inputs'])})"


def abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return f"({','.join(abi_type(c) for c in item['components'])}){item['type'][5:]}"
    return str(item["type"])


@cache
def _error_table(names: tuple[str, ...]) -> dict[bytes, dict[str, Any]]:
    table: dict[bytes, dict[str, Any]] = {}
    for name in names:
        for item in load(name).abi:
            if item.get("type") == "error":
                table[keccak(text=_signature(item))[:4]] = item
    return table


_PANICS = {0x01: "assertion failed", 0x11: "arithmetic overflow", 0x12: "division by zero", 0x32: "index out of bounds"}


def decode_revert(data: bytes | str | None, contracts: tuple[str, ...]) -> str:
    """A readable reason for revert data: a custom error with its arguments, Error(string) or a
    panic code."""
    if data is None:
        return "reverted without a reason"
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if len(raw) < 4:
        return "reverted without a reason"
    selector, body = raw[:4], raw[4:]
    if selector == keccak(text="Error(string)")[:4]:
        return str(abi_decode(["string"], body)[0])
    if selector == keccak(text="Panic(uint256)")[:4]:
        code = abi_decode(["uint256"], body)[0]
        return f"panic: {_PANICS.get(code, hex(code))}"
    item = _error_table(contracts).get(selector)
    if item is None:
        return f"unknown error 0x{raw[:4].hex()}"
    values = abi_decode([abi_type(i) for i in item["inputs"]], body)
    rendered = ", ".join(
        f"{i['name'] or f'arg{n}'}={'0x' + v.hex() if isinstance(v, bytes) else v}"
        for n, (i, v) in enumerate(zip(item["inputs"], values, strict=True))
    )
    return f"{item['name']}({rendered})"
