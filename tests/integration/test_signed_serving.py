"""A real predictor process loads only a signed bundle: configured as the chart configures it
(ENGAGE_SIGNING_REQUIRED=true, the trusted public keys in a mounted folder), it serves a bundle signed by
a trusted key, and never becomes ready on an unsigned one, one signed by a key it does not trust, or one
whose signature was changed: /v2/health/ready answers 503 with the reason, and one ERROR line says it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving_support import rows, run_server

MODULE = "engage_serving.predictor"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A key pair as an operator makes one (``engage keys generate``), and the servers' environment: the
    public key in a folder (a mounted Secret), nothing else trusted."""
    from engage.signing import generate_keypair

    root = tmp_path_factory.mktemp("keys")
    private, public = generate_keypair(root / "private", name="engage-signing")
    secret = root / "public"
    secret.mkdir()
    shutil.copy(public, secret / "engage-signing.pub.pem")
    env = {"ENGAGE_SIGNING_REQUIRED": "true", "ENGAGE_SIGNING_PUBLIC_KEYS_FILE": str(secret)}
    return {"private": private, "env": env}


def bundle(model_folder: Path, to: Path, sign_with: Path | None) -> Path:
    """A copy of the served model: unsigned, or signed with the private key ``sign_with``."""
    from engage.signing import SigningSettings, load_signer, sign_bundle

    shutil.copytree(model_folder / "model", to, ignore=shutil.ignore_patterns("signature.json"))
    if sign_with is not None:
        sign_bundle(to, model="customers", signer=load_signer(SigningSettings(key_file=sign_with)))
    return to


def test_a_bundle_signed_by_a_trusted_key_serves(
    model_folder: Path, cluster: dict[str, Any], tmp_path: Path
) -> None:
    from engage.tables import read_table

    model = bundle(model_folder, tmp_path / "model", cluster["private"])
    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    with run_server(MODULE, ["--model_dir", str(model)], tmp_path / "server.log", env=cluster["env"]) as s:
        assert httpx.get(s.url + "/v2/health/ready").status_code == 200
        answer = httpx.post(s.url + "/v1/models/engage:predict", json={"instances": rows(frame, 2)})
        assert answer.status_code == 200
        assert len(answer.json()["predictions"]) == 2
        assert "DEVELOPMENT" not in s.log()  # configured keys: no development key in sight


def _change_signature(model: Path) -> None:
    path = model / "signature.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    first = stored["signature"][0]
    stored["signature"] = ("B" if first == "A" else "A") + stored["signature"][1:]
    path.write_text(json.dumps(stored), encoding="utf-8")


REFUSED: dict[str, tuple[Callable[[Path], None] | None, bool, str]] = {
    # case: (change after signing, signed by the trusted key, what the reason says)
    "unsigned": (None, False, "refused: unsigned (a server loads only signed versions"),
    "tampered-signature": (_change_signature, True, "refused: signature does not match"),
    "unknown-key": (None, True, "refused: signed by unknown key"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_unsigned_or_tampered_bundle_never_becomes_ready(
    case: str, model_folder: Path, cluster: dict[str, Any], tmp_path: Path
) -> None:
    change, trusted, says = REFUSED[case]
    if case == "unknown-key":
        from engage.signing import generate_keypair

        other, _ = generate_keypair(tmp_path / "other", name="other")
        model = bundle(model_folder, tmp_path / "model", other)
    else:
        model = bundle(model_folder, tmp_path / "model", cluster["private"] if trusted else None)
    if change is not None:
        change(model)

    log = tmp_path / "server.log"
    with run_server(MODULE, ["--model_dir", str(model)], log, env=cluster["env"], ready=False) as s:
        for path in ("/v2/health/ready", "/v2/models/engage/ready"):
            answer = httpx.get(s.url + path)
            assert answer.status_code == 503
            assert says in answer.json()["error"]
        assert str(model / "signature.json") in httpx.get(s.url + "/v2/health/ready").json()["error"]
        assert httpx.post(s.url + "/v1/models/engage:predict", json={"instances": []}).status_code == 503
        errors = [json.loads(line) for line in s.log().splitlines() if '"ERROR"' in line]
        assert len(errors) == 1
        assert "NOT READY (unsigned or untrusted model)" in errors[0]["message"]
        assert says in errors[0]["message"]
        assert s.process.poll() is None  # up, and never ready: Kubernetes routes nothing to it
