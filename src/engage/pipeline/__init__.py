"""The Kubeflow pipeline of Engage.

* :mod:`engage.pipeline._steps`: the work of each step, as plain functions (what tests call);
* :mod:`engage.pipeline.components`: one typed KFP component per step, wrapping a step function;
* :mod:`engage.pipeline.dag`: the pipeline (gates, parallel heads, retries, exit handler);
* :func:`run_local`: the whole pipeline under ``kfp.local`` (``make run``); :func:`compile_pipeline`
  writes the IR YAML the KFP UI uploads; :func:`submit` starts a run on a cluster.

This package imports ``kfp`` only in the functions that need it.
"""

from ._local import RunSummary, compile_pipeline, run_local, submit
from ._record import RESOURCES, CostSettings, Resources, estimate_cost, record_outcome, timed

__all__ = [
    "RESOURCES",
    "CostSettings",
    "Resources",
    "RunSummary",
    "compile_pipeline",
    "estimate_cost",
    "record_outcome",
    "run_local",
    "submit",
    "timed",
]
