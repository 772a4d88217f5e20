"""The Kubeflow pipeline of Engage: its components, their step bodies, and how it runs (``engage-components``).

* :mod:`engage_components.steps`: the work of each step, as plain functions (what tests call);
* :mod:`engage_components.components`: one typed KFP component per step, wrapping a step function;
* ``pipelines/engage_pipeline.py`` (:func:`pipeline_module`): the pipeline (gates, parallel heads, retries, exit handler);
* :func:`run_local`: the whole pipeline under ``kfp.local`` (``make run``); :func:`compile_pipeline`
  writes the IR YAML the KFP UI uploads; :func:`submit` starts a run on a cluster.

This package imports ``kfp`` only in the functions that need it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dag import pipeline_module, pipeline_source
    from ._local import RunSummary, compile_pipeline, run_local, submit
    from ._record import RESOURCES, CostSettings, Resources, estimate_cost, record_outcome, run_folder, timed

#: public name -> the module defining it; imported on first use, so that the engage CLI, which imports
#: this package's cli module at start-up, stays light
_EXPORTS = {
    **dict.fromkeys(("pipeline_module", "pipeline_source"), "._dag"),
    **dict.fromkeys(("RunSummary", "compile_pipeline", "run_local", "submit"), "._local"),
    **dict.fromkeys(
        ("RESOURCES", "CostSettings", "Resources", "estimate_cost", "record_outcome", "run_folder", "timed"),
        "._record",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RESOURCES",
    "CostSettings",
    "Resources",
    "RunSummary",
    "compile_pipeline",
    "estimate_cost",
    "pipeline_module",
    "pipeline_source",
    "record_outcome",
    "run_folder",
    "run_local",
    "submit",
    "timed",
]
