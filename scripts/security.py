"""Supply-chain checks of Engage (docs/security.md). Each subcommand writes its JSON under
benchmarks/results/ and exits 1 when its check fails.

  scan           bandit (fails on a HIGH finding), secret scanning against .secrets.baseline (fails on a
                 secret not audited there), pip-audit of the locked dependencies (fails on a known
                 vulnerability that has a fix; says plainly when no vulnerability database answers)
  sbom           a CycloneDX SBOM per image, from exactly the packages its Dockerfile installs
  licences       the licence of every installed distribution, the BSL-1.1 ones named, copyleft flagged
  licence-clean  the install without alibi / alibi-detect (scripts/install.sh --licence-clean) works
  all            scan + sbom + licences

Run them through make (`make security`, `make sbom`, `make licences`, `make licence-clean`) or
`uv run python scripts/security.py <subcommand>`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import shutil
import subprocess  # nosec B404 # the scanners' own command lines, never a shell
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SBOM_DIR = ROOT / "artifacts" / "sbom"
LICENCE_CLEAN_VENV = ROOT / "artifacts" / "venv-licence-clean"
DOC = ROOT / "docs" / "security.md"
TOOLS = ("bandit", "detect-secrets", "pip-audit", "cyclonedx-bom", "pip-licenses")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])


# ---- shared ---------------------------------------------------------------------------------------


def write_result(path: Path, check: str, passed: bool, body: dict[str, Any]) -> dict[str, Any]:
    """The one JSON layout of every check: ``check``, ``when``, ``machine``, ``passed``, then its body."""
    result: dict[str, Any] = {
        "check": check,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "tools": {tool: version(tool) for tool in TOOLS},
        },
        "passed": passed,
        **body,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # nosec B603 # argv lists


def uv() -> str:
    """uv as the Makefile finds it: $UV (set by `uv run`), on PATH, or the bootstrapped .tools/bin/uv."""
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError(f"uv not found ({found}): run `make` once, or install uv")
    return found


def uv_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.setdefault("UV_PYTHON", f"{sys.version_info.major}.{sys.version_info.minor}")
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env.pop("VIRTUAL_ENV", None)  # uv sync targets UV_PROJECT_ENVIRONMENT, not the venv running this
    return env


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


#: the workspace's packages, by the folder of their pyproject.toml (how `uv export` names them)
WORKSPACE = {".": "engage", "./serving": "engage-serving", "./components": "engage-components"}


def export(*selection: str) -> list[str]:
    """The lines of ``uv export --frozen <selection>``: ``name==version [; marker]`` and workspace folders."""
    argv = [uv(), "export", "--frozen", "--no-hashes", "--no-header", "--no-annotate", "--no-editable"]
    proc = run([*argv, *selection], cwd=ROOT, env=uv_env())
    if proc.returncode != 0:
        raise RuntimeError(f"uv export {' '.join(selection)} failed: {proc.stderr.strip()}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip() and not line.startswith("#")]


def names(lines: Iterable[str]) -> set[str]:
    return {normalise(WORKSPACE.get(line, line.split("==")[0].strip())) for line in lines}


def say(line: str) -> None:
    typer.echo(line)


# ---- scan: bandit ---------------------------------------------------------------------------------

#: a finding of this severity fails the scan; the others are reported
BANDIT_FAIL_ON = "HIGH"
SEVERITIES = ("HIGH", "MEDIUM", "LOW")


def bandit_scan(root: Path) -> dict[str, Any]:
    """bandit over the targets of ``root/.bandit`` (the library, the servers, the components)."""
    proc = run([sys.executable, "-m", "bandit", "--ini", str(root / ".bandit"), "-f", "json", "-q"], cwd=root)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        return {"status": "failed", "reason": f"bandit did not run: {proc.stderr.strip()[-500:]}"}
    report = json.loads(proc.stdout)
    totals = report["metrics"]["_totals"]
    counts = {severity: int(totals[f"SEVERITY.{severity}"]) for severity in SEVERITIES}
    errors = [f"{e['filename']}: {e['reason']}" for e in report["errors"]]
    return {
        "status": "failed" if counts[BANDIT_FAIL_ON] or errors else "passed",
        "config": ".bandit",
        "fail_on": BANDIT_FAIL_ON,
        "counts": counts,
        "nosec": int(totals["skipped_tests"]),
        "lines_of_code": int(totals["loc"]),
        "findings": [
            {
                "test_id": r["test_id"],
                "severity": r["issue_severity"],
                "confidence": r["issue_confidence"],
                "file": r["filename"],
                "line": r["line_number"],
                "text": r["issue_text"],
            }
            for r in report["results"]
        ],
        "errors": errors,
    }


# ---- scan: secrets --------------------------------------------------------------------------------

BASELINE = ".secrets.baseline"


def tracked_files(root: Path) -> list[str]:
    proc = run(["git", "-C", str(root), "ls-files", "-z"])
    if proc.returncode != 0:
        raise RuntimeError(f"{root} is not a git work tree: {proc.stderr.strip()}")
    return [name for name in proc.stdout.split("\0") if name and (root / name).is_file()]


def secret_scan(root: Path) -> dict[str, Any]:
    """detect-secrets over the git-tracked files, with the plugins and filters of ``root/.secrets.baseline``.

    Fails on a secret the baseline does not hold, on a baseline entry nobody audited and on one audited
    as real (``is_secret: true``). Only file, line and kind are reported, never a secret's value.
    """
    from detect_secrets.core import baseline
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    files = tracked_files(root)
    path = root / BASELINE
    entries: list[dict[str, Any]] = []
    # from the root, as `detect-secrets scan` runs: a secret is known by its relative file name
    with contextlib.chdir(root):
        found = SecretsCollection()
        if path.exists():
            data = baseline.load_from_file(BASELINE)
            known = baseline.load(data, BASELINE)  # also sets the baseline's plugins and filters
            entries = [{"file": file, **e} for file, results in data["results"].items() for e in results]
            found.scan_files(*files)
        else:
            known = SecretsCollection()
            with default_settings():
                found.scan_files(*files)

    def where(secrets: Any) -> list[dict[str, Any]]:
        return sorted(({"file": f, "line": s.line_number, "type": s.type} for f, s in secrets), key=str)

    def entry(e: dict[str, Any]) -> dict[str, Any]:
        return {"file": e["file"], "line": e["line_number"], "type": e["type"]}

    new = where(found - known)
    unaudited = [entry(e) for e in entries if "is_secret" not in e]
    real = [entry(e) for e in entries if e.get("is_secret") is True]
    return {
        "status": "failed" if new or unaudited or real else "passed",
        "baseline": BASELINE if path.exists() else None,
        "files_scanned": len(files),
        "audited_false_positives": sum(1 for e in entries if e.get("is_secret") is False),
        "new": new,
        "unaudited": unaudited,
        "audited_as_real": real,
        # in the baseline but no longer found (moved or removed): `detect-secrets scan --baseline` drops them
        "stale": where(known - found),
    }


# ---- scan: pip-audit ------------------------------------------------------------------------------

#: known vulnerabilities accepted after review, id -> the reason (e.g. its fix needs numpy 2, which alibi
#: forbids). Empty: nothing is accepted.
ACCEPTED_VULNERABILITIES: dict[str, str] = {}
NETWORK_ERRORS = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries",
    "Timeout",
    "ProxyError",
    "SSLError",
)


def audit_with(service: str, requirements: Path) -> dict[str, Any]:
    """One pip-audit run against ``service`` (pypi or osv): its report, or why it could not audit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        argv = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip"]
        argv += ["-s", service, "-f", "json", "-o", str(out), "--progress-spinner", "off", "--timeout", "20"]
        proc = run(argv)
        report = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
    if report is None:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        network = next((line for line in reversed(lines) if any(e in line for e in NETWORK_ERRORS)), None)
        if network is not None:
            return {"service": service, "reachable": False, "reason": network[-400:]}
        return {
            "service": service,
            "reachable": True,
            "error": lines[-1] if lines else f"exit {proc.returncode}",
        }
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    if dependencies and len(skipped) == len(dependencies):
        reason = (
            f"it knows none of the {len(dependencies)} pinned versions ({skipped[0]['skip_reason']}): "
            "this index serves the packages but not their vulnerability data"
        )
        return {"service": service, "reachable": False, "reason": reason}
    return {"service": service, "reachable": True, "report": report}


def pip_audit(pins: list[str]) -> dict[str, Any]:
    """pip-audit of the locked set, PyPI's vulnerability data first, then OSV. ``unreachable`` when
    neither answers: not a failure, but no check was made, and the result says so."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(pins) + "\n")
        attempts = []
        for service in ("pypi", "osv"):
            attempts.append(audit_with(service, requirements))
            if attempts[-1]["reachable"]:
                break
    return audit_result(attempts, len(pins))


def audit_result(attempts: list[dict[str, Any]], pinned: int) -> dict[str, Any]:
    """The ``pip_audit`` section from the attempts (see :func:`audit_with`): the last one decides."""
    last = attempts[-1]
    common = {
        "requirements": "uv export --frozen --all-packages --all-extras --no-emit-workspace",
        "pinned": pinned,
        "attempts": [{k: v for k, v in a.items() if k != "report"} for a in attempts],
    }
    if not last["reachable"]:
        reason = "; ".join(f"{a['service']}: {a['reason']}" for a in attempts)
        return {"status": "unreachable", "reason": f"no vulnerability database answered ({reason})", **common}
    if "error" in last:
        return {"status": "failed", "reason": f"pip-audit failed: {last['error']}", **common}
    found: dict[str, list[dict[str, Any]]] = {"fixable": [], "without_fix": [], "accepted": []}
    dependencies = last["report"]["dependencies"]
    for dep in dependencies:
        for vuln in dep.get("vulns", []):
            item = {"name": dep["name"], "version": dep["version"], "id": vuln["id"]}
            item |= {"aliases": vuln.get("aliases", []), "fix_versions": vuln.get("fix_versions", [])}
            if vuln["id"] in ACCEPTED_VULNERABILITIES:
                found["accepted"].append(item | {"reason": ACCEPTED_VULNERABILITIES[vuln["id"]]})
            else:
                found["fixable" if item["fix_versions"] else "without_fix"].append(item)
    skipped = [{"name": d["name"], "reason": d["skip_reason"]} for d in dependencies if "skip_reason" in d]
    return {
        "status": "failed" if found["fixable"] else "passed",
        "service": last["service"],
        "audited": len(dependencies) - len(skipped),
        **found,
        "skipped": skipped,
        **common,
    }


@app.command()
def scan(
    root: Annotated[
        Path, typer.Option(help="The git work tree to scan (its .bandit, .secrets.baseline)")
    ] = ROOT,
    audit: Annotated[bool, typer.Option("--pip-audit/--no-pip-audit", help="Audit the locked set")] = True,
    out: Annotated[Path, typer.Option(help="Where the JSON goes")] = RESULTS / "security.json",
) -> None:
    """bandit, secret scanning and pip-audit: fails on a HIGH bandit finding, a secret not audited in
    .secrets.baseline, or a known vulnerability that has a fix."""
    root = root.resolve()
    bandit = bandit_scan(root)
    counts = ", ".join(f"{n} {s}" for s, n in bandit.get("counts", {}).items())
    say(
        f"bandit: {bandit['status']} ({counts}; {bandit.get('nosec', 0)} reviewed nosec) {bandit.get('reason', '')}"
    )
    for f in bandit.get("findings", []):
        say(f"  {f['severity']:6} {f['test_id']} {f['file']}:{f['line']} {f['text']}")
    for error in bandit.get("errors", []):
        say(f"  not scanned: {error}")

    secrets = secret_scan(root)
    say(
        f"secrets: {secrets['status']} ({secrets['files_scanned']} tracked files; "
        f"{secrets['audited_false_positives']} audited false positives in {BASELINE})"
    )
    for kind in ("new", "unaudited", "audited_as_real"):
        for e in secrets[kind]:
            say(f"  {kind}: {e['file']}:{e['line']} {e['type']}")
    if secrets["new"] or secrets["unaudited"]:
        say(
            f"  a false positive? `detect-secrets scan --baseline {BASELINE}`, then `detect-secrets audit {BASELINE}`"
        )

    if audit:
        vulnerabilities = pip_audit(
            [line for line in export("--all-packages", "--all-extras") if "==" in line]
        )
        if vulnerabilities["status"] == "unreachable":
            say(f"pip-audit: UNREACHABLE, so no vulnerability check was made: {vulnerabilities['reason']}")
        else:
            say(
                f"pip-audit: {vulnerabilities['status']} ({vulnerabilities.get('audited', 0)} of "
                f"{vulnerabilities['pinned']} audited by {vulnerabilities.get('service')}) {vulnerabilities.get('reason', '')}"
            )
            for kind in ("fixable", "without_fix", "accepted"):
                for v in vulnerabilities.get(kind, []):
                    say(
                        f"  {kind}: {v['name']} {v['version']} {v['id']} (fix: {', '.join(v['fix_versions']) or 'none'})"
                    )
    else:
        vulnerabilities = {"status": "skipped", "reason": "--no-pip-audit"}

    passed = bandit["status"] == secrets["status"] == "passed" and vulnerabilities["status"] != "failed"
    write_result(
        out, "security", passed, {"bandit": bandit, "secrets": secrets, "pip_audit": vulnerabilities}
    )
    say(f"security scan {'passed' if passed else 'FAILED'}: {out}")
    if not passed:
        raise typer.Exit(1)


# ---- sbom -----------------------------------------------------------------------------------------

#: each image and the Dockerfile whose `uv sync` decides what it installs
IMAGES = {
    "predictor": "serving/predictor.Dockerfile",
    "explainer": "serving/explainer.Dockerfile",
    "drift-detector": "serving/drift_detector.Dockerfile",
    "components": "components/Dockerfile",
}
CYCLONEDX_SPEC = "1.6"


@dataclass(frozen=True)
class Install:
    """What an image installs: ``uv sync --frozen --no-dev --no-editable --package P --extra E ...``."""

    package: str
    extras: tuple[str, ...]

    @classmethod
    def of(cls, dockerfile: str) -> Install:
        """Read from the Dockerfile itself: its ``--package``, ``ARG EXTRAS=`` default and ``--extra`` flags."""
        text = (ROOT / dockerfile).read_text()
        package = re.search(r"uv sync [^\n]*--package\s+([\w-]+)", text)
        if package is None:
            raise RuntimeError(f"{dockerfile}: no `uv sync ... --package` line")
        default = re.search(r"^ARG EXTRAS=(\S*)", text, re.MULTILINE)
        extras = [e for e in (default.group(1).split(",") if default else []) if e]
        extras += re.findall(r"--extra\s+([a-z][\w-]*)", text)
        return cls(package.group(1), tuple(dict.fromkeys(extras)))

    @property
    def selection(self) -> list[str]:
        return ["--no-dev", "--package", self.package, *(f for e in self.extras for f in ("--extra", e))]

    @property
    def pyproject(self) -> str:
        folder = next(path for path, name in WORKSPACE.items() if name == self.package)
        return (Path(folder) / "pyproject.toml").as_posix()


@functools.cache
def bom_validator() -> Any:
    """CycloneDX's strict JSON schema validator, without its check of each URL's IRI syntax: through
    rfc3987-syntax's Earley parser that takes ~0.1 s per URL, 95 % of a 20-s validation of one SBOM."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from jsonschema import Draft7Validator  # type: ignore[import-untyped,unused-ignore]

    Draft7Validator.FORMAT_CHECKER.checkers.pop("iri-reference", None)
    return JsonStrictValidator(SchemaVersion.from_version(CYCLONEDX_SPEC))


def schema_error(document: str) -> str | None:
    """None when ``document`` is valid CycloneDX, else its first error and where."""
    error = bom_validator().validate_str(document)
    if error is None:
        return None
    return f"{error.data.message} at /{'/'.join(map(str, error.data.absolute_path))}"


def build_sbom(image: str, dockerfile: str) -> dict[str, Any]:
    """Install the image's packages into a venv of their own exactly as its Dockerfile does, then take the
    CycloneDX SBOM of that environment (``cyclonedx-py environment``) and validate it."""
    install = Install.of(dockerfile)
    venv = SBOM_DIR / "venvs" / image
    sync = ["sync", "--frozen", "--no-editable", *install.selection]
    described = {"dockerfile": dockerfile, "install": f"uv {' '.join(sync)}"}
    proc = run([uv(), *sync, "--quiet"], cwd=ROOT, env=uv_env(UV_PROJECT_ENVIRONMENT=str(venv)))
    if proc.returncode != 0:
        return {"status": "failed", **described, "reason": f"uv sync failed: {proc.stderr.strip()[-500:]}"}
    out = SBOM_DIR / f"{image}.cdx.json"
    argv = [sys.executable, "-m", "cyclonedx_py", "environment", "--pyproject", install.pyproject]
    argv += ["--sv", CYCLONEDX_SPEC, "--output-reproducible", "--no-validate", "-o", str(out), str(venv)]
    proc = run(argv, cwd=ROOT)
    if proc.returncode != 0:
        return {"status": "failed", **described, "reason": f"cyclonedx-py: {proc.stderr.strip()[-500:]}"}
    invalid = schema_error(out.read_text())
    if invalid is not None:
        return {"status": "failed", **described, "reason": f"{out.name} is not valid CycloneDX: {invalid}"}
    bom = json.loads(out.read_text())
    components = bom.get("components", [])
    root = bom["metadata"]["component"]
    return {
        "status": "passed",
        **described,
        "sbom": str(out.relative_to(ROOT)),
        "root_component": f"{root['name']} {root['version']}",
        "components": len(components),
        "with_licence": sum(1 for c in components if c.get("licenses")),
        "bsl_1_1": sorted({normalise(c["name"]) for c in components} & BSL),
    }


@app.command()
def sbom(out: Annotated[Path, typer.Option(help="Where the summary goes")] = RESULTS / "sbom.json") -> None:
    """A CycloneDX SBOM (JSON) per image in artifacts/sbom/<image>.cdx.json; the counts in sbom.json."""
    started = time.perf_counter()
    bom_validator()  # built once, before the threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        images = dict(zip(IMAGES, pool.map(build_sbom, IMAGES, IMAGES.values()), strict=True))
    for image, r in images.items():
        detail = f"{r['components']} components -> {r['sbom']}" if r["status"] == "passed" else r["reason"]
        say(f"sbom {image}: {r['status']}, {detail}")
    passed = all(r["status"] == "passed" for r in images.values())
    body = {
        "format": f"CycloneDX {CYCLONEDX_SPEC} JSON",
        "method": "each image's `uv sync` (read from its Dockerfile) into a venv of its own, then "
        "`cyclonedx-py environment` on it, validated against the strict CycloneDX schema; in a built "
        "image, `cyclonedx-py environment /opt/engage` is the authoritative form",
        "seconds": round(time.perf_counter() - started, 1),
        "images": images,
    }
    write_result(out, "sbom", passed, body)
    if not passed:
        raise typer.Exit(1)


# ---- licences -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classified:
    """A licence decided by hand, because the package's metadata alone does not say it."""

    licence: str
    category: str
    reason: str
    used_for: str = ""
    #: text its installed licence file must still contain, else the decision is stale and fails
    evidence: str = ""


_BSL = (
    "pip-licenses reads the classifier 'Other/Proprietary License'; the metadata's License field and the "
    "LICENSE file say Business Source License 1.1 (Seldon Technologies): non-production use only, production "
    "use needs a commercial licence (except a grant to non-profit educational institutions); each version "
    "becomes Apache-2.0 four years after its release. Not an OSI licence."
)
EXPLICIT = {
    "alibi": Classified(
        "BSL-1.1",
        "source-available",
        _BSL,
        used_for="KernelSHAP and anchors explanations (src/engage/explain/_alibi.py), in the optional extra "
        "engage[alibi] / engage-serving[alibi]; refused when ENGAGE_EXPLAIN_LICENCE_CLEAN=true",
        evidence="Business Source License 1.1",
    ),
    "alibi-detect": Classified(
        "BSL-1.1",
        "source-available",
        _BSL,
        used_for="the TabularDrift backend of the drift detector (src/engage/drift/_detector.py, "
        "used when installed: ENGAGE_DRIFT_BACKEND=auto, the default), in the optional extra engage[alibi]; "
        "without it the scipy backend runs the same KS and chi-square tests",
        evidence="Business Source License 1.1",
    ),
    "skops": Classified(
        "MIT",
        "permissive",
        "its metadata names no licence (only the classifier 'OSI Approved'); its LICENSE file is MIT",
        evidence="MIT License",
    ),
}
BSL = {name for name, c in EXPLICIT.items() if c.licence == "BSL-1.1"}
#: why a flagged (copyleft) package is installed
NOTES = {
    "psycopg": "the governance store on PostgreSQL (engage[postgres], a dependency of engage-serving); "
    "used unmodified as a library",
    "psycopg-binary": "psycopg's compiled libpq build (see psycopg)",
    "pycountry": "country codes of the quality gate (engage[quality]); used unmodified as a library",
    "certifi": "Mozilla's CA certificates for HTTPS (through requests and httpx); unmodified",
    "orjson": "the servers' JSON (engage-serving); its MPL-2.0 part is unmodified",
    "tqdm": "progress bars of dice-ml and Great Expectations (and of alibi); unmodified",
    "fqdn": "jsonschema's hostname format check, for cyclonedx-bom (a development tool): in no image",
    "hypothesis": "property-based tests (a development tool): in no image",
    "pathspec": "mypy's file patterns (a development tool): in no image",
}
#: licence names of pip metadata as SPDX ids, for the report
SPDX = {
    "MIT License": "MIT",
    "Apache Software License": "Apache-2.0",
    "Apache 2.0": "Apache-2.0",
    "Apache": "Apache-2.0",
    "BSD License": "BSD",
    "3-Clause BSD License": "BSD-3-Clause",
    "BSD 3-Clause License": "BSD-3-Clause",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "ISC License (ISCL)": "ISC",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
}
#: most restrictive first: a licence expression gets the first category any of its parts matches
CATEGORIES = (
    ("source-available", re.compile(r"BSL|BUSL|Business Source|SSPL|Commons Clause")),
    ("strong-copyleft", re.compile(r"(?<!L)GPL|Affero|EUPL|OSL-")),
    ("weak-copyleft", re.compile(r"LGPL|Lesser General|MPL|Mozilla|EPL|CDDL")),
    ("permissive", re.compile(r"MIT|BSD|Apache|ISC|PSF|Python Software|HPND|Unlicense|Zlib|CNRI|CC0")),
)
#: what is not an OSI licence, or copyleft: listed in the report's `flagged`
FLAGGED = ("source-available", "strong-copyleft", "weak-copyleft", "unknown")
#: what fails the report: a package here must be reviewed and classified in EXPLICIT first
FAILING = ("strong-copyleft", "unknown")


def categorise(licence: str) -> str:
    return next((category for category, pattern in CATEGORIES if pattern.search(licence)), "unknown")


def classify(name: str, declared: str, text: str) -> dict[str, Any]:
    """A distribution's licence and category (and the reason, when decided by hand)."""
    known = EXPLICIT.get(normalise(name))
    if known is not None:
        decided: dict[str, Any] = {
            "licence": known.licence,
            "category": known.category,
            "reason": known.reason,
        }
        if known.used_for:
            decided["used_for"] = known.used_for
        if known.evidence and known.evidence not in text:
            decided |= {
                "category": "unknown",
                "reason": f"stale: its licence file no longer says {known.evidence!r}",
            }
        return decided
    if "\n" in declared:  # the whole licence text in the License field (dask-kubernetes): its title line
        declared = declared.strip().splitlines()[0].strip()
    licence = "; ".join(SPDX.get(part, part) for part in declared.split("; "))
    if "Business Source License" in text:  # a BSL package not reviewed yet
        return {"licence": licence, "category": "source-available", "reason": "its licence file is the BSL"}
    return {"licence": licence, "category": categorise(licence)}


def installed(python: str) -> list[dict[str, Any]]:
    """pip-licenses over the environment of ``python``: each distribution's name, version, declared
    licence, URL and licence text."""
    argv = [sys.executable, "-m", "piplicenses", "--python", python, "--from=mixed", "--format=json"]
    argv += ["--with-urls", "--with-license-file", "--no-license-path", "--with-system"]
    proc = run(argv)
    if proc.returncode != 0:
        raise RuntimeError(f"pip-licenses failed: {proc.stderr.strip()}")
    return list(json.loads(proc.stdout))


def licence_report(distributions: list[dict[str, Any]], images: dict[str, set[str]]) -> dict[str, Any]:
    """The report's body from pip-licenses' records and each image's package names."""
    packages = []
    for d in sorted(distributions, key=lambda d: normalise(d["Name"])):
        name = normalise(d["Name"])
        entry = {"name": d["Name"], "version": d["Version"], "declared": d["License"]}
        entry |= classify(name, d["License"], d.get("LicenseText", ""))
        entry |= {"url": d.get("URL", ""), "images": [i for i, members in images.items() if name in members]}
        if name in NOTES:
            entry["note"] = NOTES[name]
        packages.append(entry)
    categories = [p["category"] for p in packages]
    return {
        "distributions": len(packages),
        "by_category": {c: categories.count(c) for c in dict.fromkeys([*FLAGGED, "permissive"])},
        "bsl_1_1": [p for p in packages if p["licence"] == "BSL-1.1"],
        "flagged": [p for p in packages if p["category"] in FLAGGED],
        "failing": [p["name"] for p in packages if p["category"] in FAILING],
        "packages": packages,
    }


def licence_table(packages: list[dict[str, Any]]) -> str:
    """Markdown: one row per licence with its category and packages, most common first."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for p in packages:
        rows.setdefault(p["licence"], []).append(p)
    lines = ["| licence | category | n | packages |", "|---|---|---:|---|"]
    for licence, group in sorted(rows.items(), key=lambda kv: (-len(kv[1]), kv[0].lower())):
        listed = ", ".join(sorted((p["name"] for p in group), key=str.lower))
        lines.append(f"| {licence} | {group[0]['category']} | {len(group)} | {listed} |")
    return "\n".join(lines)


TABLE_BEGIN = "<!-- licences:begin (written by `make licences`) -->"
TABLE_END = "<!-- licences:end -->"


def update_doc(table: str, doc: Path = DOC) -> None:
    """Replace the licence table between the markers of docs/security.md."""
    text = doc.read_text()
    start, end = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
    doc.write_text(f"{text[:start]}\n{table}\n{text[end:]}")


@app.command()
def licences(
    python: Annotated[
        str, typer.Option(help="The environment to report (default: this one)")
    ] = sys.executable,
    out: Annotated[Path, typer.Option(help="Where the JSON goes")] = RESULTS / "licences.json",
    doc: Annotated[bool, typer.Option("--doc/--no-doc", help="Rewrite the table in docs/security.md")] = True,
) -> None:
    """The licence of every installed distribution: BSL-1.1 named with what Engage uses it for, copyleft
    and non-OSI licences flagged; fails on a strong-copyleft or unclassified one."""
    images = {image: names(export(*Install.of(dockerfile).selection)) for image, dockerfile in IMAGES.items()}
    report = licence_report(installed(python), images)
    only_alibi = names(export("--all-packages", "--all-extras")) - names(
        export("--all-packages", "--all-extras", "--no-extra", "alibi")
    )
    report["only_with_the_alibi_extra"] = sorted(only_alibi)
    for p in report["flagged"]:
        say(
            f"{p['category']:16} {p['name']} {p['version']}: {p['licence']}; images: {', '.join(p['images']) or 'none'}"
        )
    say(
        f"{report['distributions']} distributions: "
        + ", ".join(f"{n} {c}" for c, n in report["by_category"].items())
    )
    passed = not report["failing"]
    write_result(out, "licences", passed, {"environment": python, **report})
    if doc:
        update_doc(licence_table(report["packages"]))
    if not passed:
        say(f"not classified, or strong copyleft: {', '.join(report['failing'])} (review, then EXPLICIT)")
        raise typer.Exit(1)


# ---- licence-clean --------------------------------------------------------------------------------

ALIBI_MODULES = ("alibi", "alibi_detect")


@app.command("licence-clean")
def licence_clean(
    venv: Annotated[Path, typer.Option(help="The venv to (re)create (git-ignored)")] = LICENCE_CLEAN_VENV,
    out: Annotated[Path, typer.Option(help="Where the JSON goes")] = RESULTS / "licence_clean.json",
) -> None:
    """Install with `scripts/install.sh --licence-clean` into a venv of its own, then check there that
    alibi and alibi-detect are absent and that the licence-clean explanations and scipy drift tests work."""
    if venv.resolve() == Path(sys.prefix).resolve() or (venv.exists() and not (venv / "pyvenv.cfg").exists()):
        raise typer.BadParameter(f"{venv} is not a throwaway venv: it would be deleted", param_hint="--venv")
    shutil.rmtree(venv, ignore_errors=True)  # a fresh install each time (seconds, from uv's cache)
    started = time.perf_counter()
    env = uv_env(UV_PROJECT_ENVIRONMENT=str(venv))
    proc = run(["bash", str(ROOT / "scripts" / "install.sh"), "--licence-clean"], cwd=ROOT, env=env)
    install = {
        "command": "scripts/install.sh --licence-clean",
        "uv": "uv sync --frozen --all-packages --all-extras --no-extra alibi",
        "venv": str(venv.relative_to(ROOT)) if venv.is_relative_to(ROOT) else str(venv),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if proc.returncode != 0:
        install["error"] = proc.stderr.strip()[-800:]
        write_result(out, "licence-clean", False, {"install": install})
        say(f"licence-clean install FAILED: {install['error']}")
        raise typer.Exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        probe_out = Path(tmp) / "probe.json"
        probe_env = {
            **os.environ,
            "ENGAGE_GOVERNANCE_DATABASE_URL": f"sqlite:///{tmp}/governance.db",
            "ENGAGE_SIGNING_DEV_DIR": tmp,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        probe_env.pop("VIRTUAL_ENV", None)
        probe_env.pop("ENGAGE_DRIFT_BACKEND", None)  # the default (auto) must pick scipy by itself
        argv = [str(venv / "bin" / "python"), __file__, "licence-clean-probe", "--out", str(probe_out)]
        proc = run(argv, cwd=tmp, env=probe_env)
        checks = json.loads(probe_out.read_text()) if probe_out.exists() else {}
    if not checks:
        checks = {"probe": {"passed": False, "error": proc.stderr.strip()[-800:]}}
    passed = all(c["passed"] for c in checks.values())
    for name, c in checks.items():
        say(f"{name}: {'ok' if c['passed'] else 'FAILED'} {c.get('error', '')}")
    write_result(out, "licence-clean", passed, {"install": install, "checks": checks})
    say(f"licence-clean install {'works' if passed else 'FAILED'}: {out}")
    if not passed:
        raise typer.Exit(1)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _probe(checks: dict[str, dict[str, Any]], name: str, check: Callable[[], dict[str, Any]]) -> None:
    started = time.perf_counter()
    try:
        checks[name] = {"passed": True, **check()}
    except Exception as e:  # every check reports its own failure, and the others still run
        checks[name] = {"passed": False, "error": f"{type(e).__name__}: {e}"}
    checks[name]["seconds"] = round(time.perf_counter() - started, 2)


@app.command("licence-clean-probe", hidden=True)
def licence_clean_probe(out: Annotated[Path, typer.Option(help="Where the checks' JSON goes")]) -> None:
    """Run by `licence-clean` with the licence-clean venv's Python: each check, passed or why not."""
    import importlib
    import importlib.util
    from importlib.metadata import distributions

    checks: dict[str, dict[str, Any]] = {}

    def nothing_of_alibi() -> dict[str, Any]:
        importable = [m for m in ALIBI_MODULES if importlib.util.find_spec(m) is not None]
        present = sorted({normalise(d.metadata["Name"]) for d in distributions()} & BSL)
        require(not importable and not present, f"importable: {importable}, installed: {present}")
        return {"importable": importable, "installed": present}

    def explanations() -> dict[str, Any]:
        from engage.contract import load_contract
        from engage.errors import ExplainError
        from engage.explain import LICENCE_CLEAN, Explainer, ExplainSettings
        from engage.synthetic import SyntheticConfig, generate_customers
        from engage.training import TrainConfig, train

        contract = load_contract()
        as_of = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
        table = generate_customers(SyntheticConfig(rows=2_000, seed=13, as_of=as_of, snapshots=2)).frame
        bundle = train(table, contract, config=TrainConfig(seed=5, max_rounds=40)).bundle("xgboost")
        small = ExplainSettings(background_rows=100, lime_samples=300, counterfactual_samples=300)
        explainer = Explainer(bundle, contract, table, settings=small)
        served = explainer.methods()
        require(served == list(LICENCE_CLEAN), f"methods served: {served}")
        rows = table.iloc[:2]
        results = {}
        for method in served:
            meta = explainer.explain(rows, method=method, head="churn").meta
            results[method] = f"{meta.library} ({meta.licence})"
        refused = {}
        for method in ("kernel_shap", "anchors"):
            try:
                explainer.explain(rows, method=method, head="churn")
            except ExplainError as e:
                refused[method] = e.message
            else:
                raise AssertionError(f"{method} explained without alibi")
        return {"served": results, "refused": refused}

    def drift() -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        from engage.drift import DriftDetector, DriftSettings, Reference

        def frame(seed: int, shift: float) -> pd.DataFrame:
            rng = np.random.default_rng(seed)
            plan = rng.choice(["free", "basic", "premium"], 1_000)
            return pd.DataFrame({"age": rng.normal(40 + shift, 10, 1_000), "plan": plan})

        settings = DriftSettings()  # no ENGAGE_DRIFT_BACKEND: the default, auto
        require(settings.backend == "auto", f"the default drift backend is {settings.backend}, not auto")
        reference = Reference(frame(1, 0.0), categorical={"plan": ["free", "basic", "premium"]})
        detector = DriftDetector(reference, settings)
        same = detector.test(reference.encode(frame(2, 0.0)))["data"]
        shifted = detector.test(reference.encode(frame(3, 5.0)))["data"]
        require(not same["is_drift"], f"an unshifted sample is drift: {same['p_val']}")
        require(shifted["is_drift"] and shifted["feature_drift"]["age"], "a shift of age by 5 is not drift")
        require(detector.backend == "scipy", f"auto picked {detector.backend} without alibi-detect")
        # an explicit alibi-detect is refused with what to do, not a ModuleNotFoundError
        try:
            DriftDetector(reference, DriftSettings(backend="alibi-detect"))
            explicit = "works"
        except Exception as e:  # the outcome is reported, not judged
            explicit = f"{type(e).__name__}: {e}"
        require(explicit.startswith("ConfigError"), f"backend alibi-detect without it: {explicit}")
        return {
            "backend": detector.name,
            "unshifted_is_drift": bool(same["is_drift"]),
            "shifted_is_drift": bool(shifted["is_drift"]),
            "default_backend": {"setting": "auto", "runs": detector.backend},
            "explicit_alibi_detect": explicit,
        }

    def servers_load() -> dict[str, Any]:
        modules = ["engage_serving.explainer._model", "engage_serving.drift_detector._model"]
        for module in modules:
            importlib.import_module(module)  # the servers' code, with kserve
        return {"imported": modules}

    for name, check in [
        ("no_alibi", nothing_of_alibi),
        ("explanations", explanations),
        ("drift_scipy", drift),
        ("servers_import", servers_load),
    ]:
        _probe(checks, name, check)
    out.write_text(json.dumps(checks, indent=2) + "\n")


# ---- all ------------------------------------------------------------------------------------------


@app.command("all")
def all_checks() -> None:
    """scan + sbom + licences (each writes its JSON); fails if any fails."""
    failed = []
    for name, command in (("scan", scan), ("sbom", sbom), ("licences", licences)):
        say(f"== {name}")
        try:
            command()
        except typer.Exit as e:
            if e.exit_code:
                failed.append(name)
    if failed:
        say(f"failed: {', '.join(failed)}")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
