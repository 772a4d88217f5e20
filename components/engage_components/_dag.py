"""The pipelines' DAG sources, ``pipelines/<module>.py`` (``engage_pipeline``, ``feedback_pipeline``), loaded
as ``kfp dsl compile --py`` loads a file.

The DAG lives beside its compiled YAML at the top of the repository, not inside this package: it is what
a reader opens first, and what the KFP UI shows. A wheel of ``engage-components`` carries a copy under
``engage_components/_pipelines/``; a source checkout (editable install) reads the file itself.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

from engage.errors import ConfigError

__all__ = ["PIPELINE_MODULE", "pipeline_module", "pipeline_source"]

#: the module name the DAG is loaded under
PIPELINE_MODULE = "engage_pipeline"


def pipeline_source(name: str = PIPELINE_MODULE) -> Path:
    """A DAG's source file: the installed wheel's copy, else the repository's ``pipelines/``."""
    packaged = resources.files("engage_components").joinpath("_pipelines", f"{name}.py")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "pipelines" / f"{name}.py"


@functools.cache
def pipeline_module(name: str = PIPELINE_MODULE) -> ModuleType:
    """A DAG module (``engage_pipeline``: ``NAME``, ``engage_pipeline``, ``engage_run``), imported once."""
    if name in sys.modules:
        return sys.modules[name]
    path = pipeline_source(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"{path}: the pipeline's source is missing (reinstall engage-components)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
