"""The supply-chain checks' configuration and pure parts (scripts/security.py, docs/security.md): the
secrets baseline holds only audited false positives, the bandit config, each image's package set read
from its Dockerfile, the licence classifier (alibi and alibi-detect are BSL-1.1), the pip-audit verdicts
(unreachable is said, never a pass) and the JSON layouts."""

from __future__ import annotations

import importlib.util
import json
import sys
from configparser import ConfigParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BSL_TEXT = "Licensor: Seldon Technologies Limited\n\nBusiness Source License 1.1\n\nTerms ..."


@pytest.fixture(scope="module")
def security() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engage_security_script", ROOT / "scripts" / "security.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# ---- configuration --------------------------------------------------------------------------------


def test_the_secrets_baseline_holds_only_audited_false_positives() -> None:
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    plugins = {p["name"] for p in baseline["plugins_used"]}
    assert {"AWSKeyDetector", "PrivateKeyDetector", "KeywordDetector", "BasicAuthDetector"} <= plugins
    entries = [(file, e) for file, results in baseline["results"].items() for e in results]
    assert entries, "an empty baseline would mean the scan found nothing to audit: regenerate it"
    for file, entry in entries:
        assert entry["is_secret"] is False, (
            f"{file}:{entry['line_number']} is not audited as a false positive"
        )
        assert "hashed_secret" in entry
        assert not file.startswith(("artifacts/", ".venv/")), file
    # the documented table names every file of the baseline
    doc = (ROOT / "docs" / "security.md").read_text()
    assert all(f"`{file}`" in doc for file, _ in entries)


def test_bandit_scans_the_three_packages_and_skips_no_test() -> None:
    ini = ConfigParser()
    ini.read(ROOT / ".bandit")
    assert ini["bandit"]["targets"].split(",") == ["src/engage", "serving/engage_serving", "components"]
    assert "skips" not in ini["bandit"]
    assert all((ROOT / target).is_dir() for target in ini["bandit"]["targets"].split(","))


def test_each_image_installs_what_its_dockerfile_says(security: ModuleType) -> None:
    dockerfiles = {str(p.relative_to(ROOT)) for p in ROOT.glob("serving/*.Dockerfile")} | {
        "components/Dockerfile"
    }
    assert set(security.IMAGES.values()) == dockerfiles
    installs = {image: security.Install.of(dockerfile) for image, dockerfile in security.IMAGES.items()}
    assert {image: (i.package, i.extras) for image, i in installs.items()} == {
        "predictor": ("engage-serving", ("aws",)),
        "explainer": ("engage-serving", ("explainer", "aws")),
        "drift-detector": ("engage-serving", ("aws",)),
        "components": ("engage-components", ("aws",)),
    }
    assert installs["explainer"].selection == [
        "--no-dev", "--package", "engage-serving", "--extra", "explainer", "--extra", "aws",
    ]  # fmt: skip
    assert installs["components"].pyproject == "components/pyproject.toml"


def test_an_image_build_without_uv_sync_is_refused(security: ModuleType, tmp_path: Path) -> None:
    dockerfile = tmp_path / "x.Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nRUN pip install engage\n")
    with pytest.raises(RuntimeError, match=r"no `uv sync \.\.\. --package` line"):
        security.Install.of(str(dockerfile))


# ---- licences -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "used_in"),
    [("alibi", "src/engage/explain/_alibi.py"), ("alibi_detect", "src/engage/drift/_detector.py")],
)
def test_alibi_and_alibi_detect_are_bsl_with_what_engage_uses_them_for(
    security: ModuleType, name: str, used_in: str
) -> None:
    decided = security.classify(name, "Other/Proprietary License", BSL_TEXT)
    assert (decided["licence"], decided["category"]) == ("BSL-1.1", "source-available")
    assert "Business Source License 1.1" in decided["reason"]
    assert "Not an OSI licence" in decided["reason"]
    assert used_in in decided["used_for"]
    assert (ROOT / used_in).is_file()
    assert {"alibi", "alibi-detect"} == security.BSL


def test_a_hand_decision_whose_licence_file_changed_is_stale(security: ModuleType) -> None:
    decided = security.classify("alibi", "Apache Software License", "Apache License, Version 2.0")
    assert decided["category"] == "unknown"
    assert "stale" in decided["reason"]


@pytest.mark.parametrize(
    ("declared", "licence", "category"),
    [
        ("MIT License", "MIT", "permissive"),
        ("Apache Software License; BSD License", "Apache-2.0; BSD", "permissive"),
        ("Apache-2.0 OR BSD-3-Clause", "Apache-2.0 OR BSD-3-Clause", "permissive"),
        ("LGPL-3.0-only", "LGPL-3.0-only", "weak-copyleft"),
        ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0", "weak-copyleft"),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", "MPL-2.0 AND (Apache-2.0 OR MIT)", "weak-copyleft"),
        ("GNU General Public License v3 (GPLv3)", "GNU General Public License v3 (GPLv3)", "strong-copyleft"),
        ("AGPL-3.0-or-later", "AGPL-3.0-or-later", "strong-copyleft"),
        ("Other/Proprietary License", "Other/Proprietary License", "unknown"),
        ("UNKNOWN", "UNKNOWN", "unknown"),
    ],
)
def test_declared_licences_are_classified(
    security: ModuleType, declared: str, licence: str, category: str
) -> None:
    assert security.classify("somepkg", declared, "") == {"licence": licence, "category": category}


def test_an_unreviewed_bsl_package_is_caught_by_its_licence_text(security: ModuleType) -> None:
    decided = security.classify("newpkg", "Other/Proprietary License", BSL_TEXT)
    assert decided["category"] == "source-available"


def test_the_licence_report_names_bsl_flags_copyleft_and_fails_on_gpl(security: ModuleType) -> None:
    def dist(name: str, licence: str, text: str = "") -> dict[str, str]:
        return {"Name": name, "Version": "1.0", "License": licence, "LicenseText": text, "URL": ""}

    distributions = [
        dist("alibi", "Other/Proprietary License", BSL_TEXT),
        dist("numpy", "BSD License"),
        dist("psycopg", "LGPL-3.0-only"),
        dist("gplthing", "GPL-3.0-only"),
    ]
    report = security.licence_report(
        distributions, {"predictor": {"numpy", "psycopg"}, "components": {"numpy"}}
    )
    assert [p["name"] for p in report["bsl_1_1"]] == ["alibi"]
    assert report["bsl_1_1"][0]["images"] == []
    assert {p["name"] for p in report["flagged"]} == {"alibi", "psycopg", "gplthing"}
    assert report["failing"] == ["gplthing"]
    assert report["by_category"] == {
        "source-available": 1, "strong-copyleft": 1, "weak-copyleft": 1, "unknown": 0, "permissive": 1,
    }  # fmt: skip
    numpy = next(p for p in report["packages"] if p["name"] == "numpy")
    assert numpy == {
        "name": "numpy", "version": "1.0", "declared": "BSD License", "licence": "BSD",
        "category": "permissive", "url": "", "images": ["predictor", "components"],
    }  # fmt: skip
    assert "| BSL-1.1 | source-available | 1 | alibi |" in security.licence_table(report["packages"])


def test_the_docs_table_is_replaced_between_its_markers(security: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "security.md"
    doc.write_text(f"# x\n\nbefore\n{security.TABLE_BEGIN}\nold table\n{security.TABLE_END}\nafter\n")
    security.update_doc("| new |", doc)
    security.update_doc("| newer |", doc)
    assert (
        doc.read_text() == f"# x\n\nbefore\n{security.TABLE_BEGIN}\n| newer |\n{security.TABLE_END}\nafter\n"
    )
    assert security.TABLE_BEGIN in security.DOC.read_text()


# ---- pip-audit verdicts ---------------------------------------------------------------------------


def test_no_database_answering_is_unreachable_with_each_reason_and_not_a_failure(
    security: ModuleType,
) -> None:
    attempts = [
        {"service": "pypi", "reachable": False, "reason": "it knows none of the 279 pinned versions"},
        {"service": "osv", "reachable": False, "reason": "NameResolutionError: api.osv.dev"},
    ]
    result = security.audit_result(attempts, 282)
    assert result["status"] == "unreachable"
    assert "pypi: it knows none" in result["reason"]
    assert "osv: NameResolutionError" in result["reason"]
    assert [a["service"] for a in result["attempts"]] == ["pypi", "osv"]


def _report(*deps: dict[str, Any]) -> dict[str, Any]:
    return {"service": "osv", "reachable": True, "report": {"dependencies": list(deps), "fixes": []}}


def test_a_vulnerability_with_a_fix_fails_and_one_without_is_listed(security: ModuleType) -> None:
    fixable = {"name": "a", "version": "1", "vulns": [{"id": "GHSA-1", "fix_versions": ["2"], "aliases": []}]}
    no_fix = {"name": "b", "version": "1", "vulns": [{"id": "PYSEC-2", "fix_versions": [], "aliases": []}]}
    clean = {"name": "c", "version": "1", "vulns": []}
    skipped = {"name": "d", "skip_reason": "Dependency not found on PyPI"}
    result = security.audit_result([_report(fixable, no_fix, clean, skipped)], 4)
    assert result["status"] == "failed"
    assert [v["id"] for v in result["fixable"]] == ["GHSA-1"]
    assert [v["id"] for v in result["without_fix"]] == ["PYSEC-2"]
    assert result["audited"] == 3
    assert result["skipped"] == [{"name": "d", "reason": "Dependency not found on PyPI"}]
    passed = security.audit_result([_report(no_fix, clean)], 2)
    assert (passed["status"], passed["service"]) == ("passed", "osv")


def test_an_accepted_vulnerability_does_not_fail(
    security: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(security.ACCEPTED_VULNERABILITIES, "GHSA-1", "the fix needs numpy 2")
    dep = {"name": "a", "version": "1", "vulns": [{"id": "GHSA-1", "fix_versions": ["2"]}]}
    result = security.audit_result([_report(dep)], 1)
    assert result["status"] == "passed"
    assert result["accepted"][0]["reason"] == "the fix needs numpy 2"


def test_a_pip_audit_crash_is_a_failure_not_unreachable(security: ModuleType) -> None:
    result = security.audit_result([{"service": "pypi", "reachable": True, "error": "KeyError: 'x'"}], 1)
    assert (result["status"], result["reason"]) == ("failed", "pip-audit failed: KeyError: 'x'")


# ---- the JSON layout ------------------------------------------------------------------------------


def test_every_result_has_the_documented_head(security: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "r.json"
    security.write_result(path, "security", False, {"bandit": {"status": "failed"}})
    result = json.loads(path.read_text())
    assert list(result) == ["check", "when", "machine", "passed", "bandit"]
    assert (result["check"], result["passed"]) == ("security", False)
    assert set(result["machine"]["tools"]) == {
        "bandit",
        "detect-secrets",
        "pip-audit",
        "cyclonedx-bom",
        "pip-licenses",
    }


@pytest.mark.parametrize("name", ["security", "sbom", "licences", "licence_clean"])
def test_the_committed_results_have_that_head_and_passed(name: str) -> None:
    result = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
    assert list(result)[:4] == ["check", "when", "machine", "passed"]
    assert result["passed"] is True
    if name == "security":
        assert result["bandit"]["counts"]["HIGH"] == 0
        assert result["pip_audit"]["status"] in ("passed", "unreachable")
    if name == "sbom":
        assert set(result["images"]) == {"predictor", "explainer", "drift-detector", "components"}
        assert all(image["bsl_1_1"] == [] for image in result["images"].values())
    if name == "licences":
        assert {p["name"] for p in result["bsl_1_1"]} == {"alibi", "alibi-detect"}
