"""Run, compile and submit the pipeline.

:func:`run_local` runs the whole pipeline under ``kfp.local`` (each task a subprocess of this Python
environment, which holds the ``engage`` library the components image would) with caching on, so a
second run with the same inputs reuses every step whose inputs did not change. :func:`compile_pipeline`
writes the IR YAML the KFP UI uploads; :func:`submit` uploads it to a KFP API and starts a run (and a
recurring one). Each takes ``pipeline``: ``engage`` (training, ``pipelines/engage_pipeline.py``) or
``feedback`` (the feedback loop, ``pipelines/feedback_pipeline.py``), a key of :data:`PIPELINES`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._dag import pipeline_module

__all__ = [
    "PIPELINES",
    "SCHEDULES",
    "RunSummary",
    "compile_pipeline",
    "find_output",
    "pipeline_function",
    "run_local",
    "submit",
]

#: the pipelines: name -> the DAG module under pipelines/ (it defines ``NAME`` and a function of its name)
PIPELINES = {"engage": "engage_pipeline", "feedback": "feedback_pipeline"}
#: each pipeline's default recurring schedule (KFP cron, with seconds; UTC): ``--schedule daily``. Training
#: at 02:00 on the night's data; the feedback run at 06:00, after the night's outcomes have landed and the
#: training run is done (a retraining it starts does not overlap the nightly one). Daily, not hourly: the
#: outcomes arrive in daily batches, the event store is kept in day folders, and an hour's labelled rows
#: are too few for the live figures (30 per head) and the drift test (500 each side) to judge.
SCHEDULES = {"engage": "0 0 2 * * *", "feedback": "0 0 6 * * *"}


@dataclass
class RunSummary:
    """What a local run did: its outcome (exit handler), promotion, and where its outputs are."""

    job_dir: Path | None
    state: str
    seconds: float
    outcome: dict[str, Any] | None
    promotion: dict[str, Any] | None
    outputs: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    #: kfp.local's own log of the run: every task's streamed output
    log: Path | None = None

    def read(self, name: str, file: str) -> dict[str, Any] | None:
        folder = self.outputs.get(name)
        if folder is None or not (folder / file).is_file():
            return None
        data: dict[str, Any] = json.loads((folder / file).read_text(encoding="utf-8"))
        return data


#: output folders the summary reports: name -> (task, output)
OUTPUTS = {
    "quality": ("validate", "report"),
    "training": ("evaluate", "training"),
    "fairness": ("fairness", "fairness"),
    "explanations": ("explain", "explanations"),
    "card": ("explain", "card"),
    "drift_reference": ("drift-reference", "reference"),
    "promotion": ("promote", "promotion"),
    "review_sample": ("review-sample", "sample"),
    "batch_score": ("batch-score", "scores"),
    "rollout": ("rollout", "rollout"),
    "outcome": ("record-outcome", "outcome"),
    # the feedback pipeline's
    "feedback": ("feedback", "report"),
}
#: outputs of steps that never cache: this run's own (an older run's would be found otherwise)
_UNCACHED = ("promotion", "rollout", "outcome", "feedback")


def find_output(root: Path, task: str, output: str, *, since: float = 0.0) -> Path | None:
    """The newest ``<root>/<run>/.../<task>/<output>``: a cached task's output stays in the run that
    made it, so the newest one is the one this run used."""
    found = [p for p in root.glob(f"*/**/{task}/{output}") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def pipeline_function(pipeline: str = "engage") -> Any:
    """The ``@dsl.pipeline`` function of ``pipeline`` (a key of :data:`PIPELINES`)."""
    from engage.errors import ConfigError

    module = PIPELINES.get(pipeline)
    if module is None:
        raise ConfigError(f"pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    return getattr(pipeline_module(module), module)


def run_local(params: dict[str, Any], *, pipeline_root: Path, pipeline: str = "engage") -> RunSummary:
    """Run ``pipeline`` under ``kfp.local`` with caching; never raises for a failed run (see ``state``)."""
    from kfp import local

    run_pipeline = pipeline_function(pipeline)

    pipeline_root = pipeline_root.resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=True,
        cache_root=str(pipeline_root / ".cache"),
    )
    before = {p.name for p in pipeline_root.iterdir()}
    started = time.time()
    error = None
    log = pipeline_root / "run.log"
    # kfp.local streams every task's output to stdout: keep it in a file beside the run
    with (
        warnings.catch_warnings(),
        open(log, "w", encoding="utf-8") as sink,
        contextlib.redirect_stdout(sink),
    ):
        # kfp.local warns that a custom base image is not used by the SubprocessRunner: that is the design
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        # and that resource requests (the cluster's) do nothing locally: also by design
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            run_pipeline(**params)
        except RuntimeError as e:  # kfp.local raises when a task (other than the exit handler) failed
            error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        finally:
            _release(sink)
    if error is not None:
        cause = failure_cause(log.read_text(encoding="utf-8", errors="replace"))
        if cause:
            error = f"{error}: {cause}"
    seconds = time.time() - started
    new = sorted(
        (
            p
            for p in pipeline_root.iterdir()
            if p.is_dir() and p.name not in before and not p.name.startswith(".")
        ),
        key=lambda p: p.stat().st_mtime,
    )
    job = new[-1] if new else None
    outputs: dict[str, Path] = {}
    for name, (task, output) in OUTPUTS.items():
        since = started if name in _UNCACHED else 0.0
        path = find_output(pipeline_root, task, output, since=since)
        if path is not None:
            outputs[name] = path
    summary = RunSummary(job, "FAILED" if error else "SUCCEEDED", seconds, None, None, outputs, error, log)
    outcome_file = outputs.get("outcome")
    if outcome_file is not None and outcome_file.is_file():
        summary.outcome = json.loads(outcome_file.read_text(encoding="utf-8"))
        summary.state = str(summary.outcome.get("state", summary.state))
    summary.promotion = summary.read("promotion", "promotion.json")
    return summary


#: the last line of a Python traceback: ``[module.]Name: message`` for an exception type
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*([A-Z]\w*(?:Error|Exception|Refused|Rejected|Exit|Interrupt)\w*): (.+)$"
)


def failure_cause(log_text: str) -> str | None:
    """The exception (type and message) that failed a task, read from kfp.local's log of the run: the
    last traceback's last line. None when the log holds no traceback."""
    found = None
    for line in log_text.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match and match.group(1) != "RuntimeError":  # kfp.local's own "Task ... failed" wrapper
            found = f"{match.group(1)}: {match.group(2).strip()}"
    return found


def _release(sink: Any) -> None:
    """Detach logging handlers kfp.local bound to the log file, which is about to close."""
    import logging

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.StreamHandler) and handler.stream is sink:
                logger.removeHandler(handler)


def compile_pipeline(path: Path, pipeline: str = "engage") -> Path:
    """Write ``pipeline``'s IR YAML (what the KFP UI and ``kfp.Client`` upload)."""
    from kfp import compiler

    function = pipeline_function(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(function, str(path))
    return path


def submit(
    host: str,
    params: dict[str, Any],
    *,
    experiment: str = "engage",
    version: str | None = None,
    schedule: str | None = None,
    namespace: str | None = None,
    pipeline: str = "engage",
) -> dict[str, str]:
    """Upload ``pipeline`` (a new version), start a run, and optionally a recurring run (cron, or
    ``daily``: the pipeline's :data:`SCHEDULES` entry)."""
    import tempfile

    import kfp

    from engage import __version__

    pipeline_function(pipeline)  # an unknown name fails before any call
    name = pipeline_module(PIPELINES[pipeline]).NAME
    if schedule == "daily":
        schedule = SCHEDULES[pipeline]

    client = kfp.Client(host=host, namespace=namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / f"{PIPELINES[pipeline]}.yaml", pipeline)
        label = version or f"{__version__}-{time.strftime('%Y%m%d-%H%M%S')}"
        existing = client.get_pipeline_id(name)
        if existing is None:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=name).pipeline_id
            version_id = client.list_pipeline_versions(pipeline_id).pipeline_versions[0].pipeline_version_id
        else:
            pipeline_id = existing
            uploaded = client.upload_pipeline_version(
                str(package), pipeline_version_name=label, pipeline_id=existing
            )
            version_id = uploaded.pipeline_version_id
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(
        experiment_id=exp.experiment_id, job_name=f"{name}-{label}", params=params,
        pipeline_id=pipeline_id, version_id=version_id,
    )  # fmt: skip
    out = {"pipeline_id": pipeline_id, "version_id": version_id, "run_id": run.run_id}
    if schedule:
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=f"{name}-recurring", cron_expression=schedule,
            params=params, pipeline_id=pipeline_id, version_id=version_id, max_concurrency=1,
        )  # fmt: skip
        out["recurring_run_id"] = job.recurring_run_id
    return out
