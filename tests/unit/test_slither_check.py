"""The Slither gate: a high or medium finding fails the build until SECURITY.md explains it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.slither_check import finding_name, main


def _finding(check: str, impact: str, contract: str, function: str) -> dict[str, object]:
    return {
        "check": check,
        "impact": impact,
        "elements": [
            {
                "type": "function",
                "name": function,
                "type_specific_fields": {"parent": {"type": "contract", "name": contract}},
            }
        ],
    }


def _report(tmp_path: Path, *findings: dict[str, object]) -> str:
    path = tmp_path / "slither.json"
    path.write_text(json.dumps({"success": True, "error": None, "results": {"detectors": list(findings)}}))
    return str(path)


def test_a_finding_is_named_by_detector_and_function() -> None:
    assert (
        finding_name(_finding("unused-return", "Medium", "Registry", "register")) == "unused-return: Registry.register"
    )


def test_an_unexplained_medium_finding_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    explanations = tmp_path / "SECURITY.md"
    explanations.write_text("### unused-return: Registry.other\n")
    report = _report(tmp_path, _finding("unused-return", "Medium", "Registry", "register"))
    assert main(report, str(explanations)) == 1
    assert "unexplained: unused-return: Registry.register" in capsys.readouterr().out


def test_explained_and_low_findings_pass(tmp_path: Path) -> None:
    explanations = tmp_path / "SECURITY.md"
    explanations.write_text("### reentrancy-eth: Vault.withdraw\nwhy it is safe\n")
    report = _report(
        tmp_path,
        _finding("reentrancy-eth", "High", "Vault", "withdraw"),
        _finding("timestamp", "Low", "Vault", "reclaim"),
    )
    assert main(report, str(explanations)) == 0


def test_a_failed_analysis_fails(tmp_path: Path) -> None:
    path = tmp_path / "slither.json"
    path.write_text(json.dumps({"success": False, "error": "compilation failed", "results": {}}))
    explanations = tmp_path / "SECURITY.md"
    explanations.write_text("")
    assert main(str(path), str(explanations)) == 1
