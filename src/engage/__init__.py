"""Engage: customer engagement, churn and lifetime-value models, run the Kubeflow way.

The package root stays import-light on purpose: ``engage --help`` and every KFP component start by
importing it. Import the parts you need from their subpackages (``engage.contract``, ``engage.quality``,
``engage.synthetic``, ``engage.tables``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("engage")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
