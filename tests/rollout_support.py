"""What the rollout test and benchmark share: a canary model shifted by design, several real predictor
processes started and stopped at once, and a real Prometheus scraping them on loopback, one job each."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tests.monitoring_support import wait_ok
from tests.serving_support import free_port, run_server

__all__ = ["SHIFT", "predictors", "prometheus", "shifted_model"]

#: the churn head's logit offset in the shifted canary, for every group: its probabilities move far
SHIFT = {"female": 3.0, "male": 3.0, "non_binary": 3.0}


def shifted_model(model_folder: Path, root: Path, shift: dict[str, float] | None = None) -> Path:
    """A copy of ``model_folder``'s bundle whose churn head carries ``shift`` (default :data:`SHIFT`) as
    per-gender logit offsets, re-signed as the registry signs a version: its folder."""
    from engage.model import GroupOffsets, load_bundle
    from engage.registry import RegistrySettings
    from engage.signing import sign_bundle

    bundle = load_bundle(model_folder / "model")
    offsets = GroupOffsets([{"name": "gender", "bins": None}], shift or SHIFT)
    bundle.adjustments["churn"] = offsets.to_json()
    bundle.save(root / "model")
    sign_bundle(root / "model", model=RegistrySettings().model)
    return root / "model"


@contextlib.contextmanager
def predictors(models: dict[str, Path], root: Path) -> Iterator[dict[str, str]]:
    """Predictor processes serving ``models`` (by job), started and stopped at once (each takes seconds
    to load and to drain): their URLs by job. Logs in ``root/<job>.log``."""
    managers = {
        job: run_server("engage_serving.predictor", ["--model_dir", str(model)], root / f"{job}.log")
        for job, model in models.items()
    }
    with ThreadPoolExecutor(len(managers)) as pool:
        started = {job: pool.submit(cm.__enter__) for job, cm in managers.items()}
        urls, failure = {}, None
        for job, future in started.items():
            try:
                urls[job] = future.result().url
            except Exception as e:  # the others that started are still stopped
                failure = failure or e
        try:
            if failure is not None:
                raise failure
            yield urls
        finally:
            stops = [pool.submit(managers[job].__exit__, None, None, None) for job in urls]
            for stop in stops:
                stop.result()


@contextlib.contextmanager
def prometheus(
    binary: str, targets: dict[str, str], root: Path, *, scrape_seconds: float = 1
) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping each of ``targets`` (base URLs by job name) every
    ``scrape_seconds``, its data in ``root/tsdb`` and its log in ``root/prometheus.log``: its base URL once
    ready."""
    interval = f"{round(scrape_seconds * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [url.removeprefix("http://")]}]}
            for job, url in targets.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    with (root / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ok(f"http://{address}/-/ready", proc=process)
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=10)
