"""Safe model artifacts: XGBoost models as UBJSON, scikit-learn models as skops files, and a manifest.

No artifact is ever stored in a format that can run code when it is read (Python object
serialization); loading a model only rebuilds data:

* XGBoost models (a ``Booster`` or the scikit-learn wrappers) are saved with xgboost's own
  ``save_model`` as UBJSON (``.ubj``), which holds trees and parameters only.
* scikit-learn estimators are saved with :mod:`skops.io` (``.skops``). Loading refuses, before anything
  is built, a file that holds any type outside an explicit allow-list, :data:`TRUSTED_SKLEARN_TYPES`
  by default. The check is stricter than skops' own: skops trusts every scikit-learn estimator, every
  numpy ufunc and a few containers by default, this module trusts only what is listed.
* :func:`write_manifest` records the SHA-256 and size of every file of a model directory;
  :func:`verify_manifest` refuses a directory where a file was changed, removed or added since.
* No pickle, ever: a bundle holding a ``.pkl`` / ``.pickle`` / ``.joblib`` / ``.dill`` / ``.pt`` file,
  a manifest listing one, or a file that starts like a pickle is refused by :func:`write_manifest` and
  :func:`verify_manifest`. ``signature.json`` (:mod:`engage.signing`) sits beside the manifest, unlisted.

Every problem is an :class:`~engage.errors.ArtifactError` whose one-line message names the file;
a corrupt file never surfaces as a raw xgboost or skops exception. Call :func:`verify_manifest` before
loading: a changed byte inside an otherwise well-formed XGBoost file can crash xgboost itself. xgboost, scikit-learn and skops are
imported inside the functions that need them: importing this module stays cheap.
"""

from engage.artifacts._manifest import MANIFEST, PICKLE_SUFFIXES, SIGNATURE, verify_manifest, write_manifest
from engage.artifacts._manifest import MANIFEST_VERSION as MANIFEST_VERSION
from engage.artifacts._sklearn import SKLEARN_SUFFIX as SKLEARN_SUFFIX
from engage.artifacts._sklearn import load_sklearn, save_sklearn
from engage.artifacts._trusted import TRUSTED_SKLEARN_TYPES
from engage.artifacts._xgboost import XGBOOST_SUFFIX as XGBOOST_SUFFIX
from engage.artifacts._xgboost import load_xgboost, save_xgboost

__all__ = [
    "MANIFEST",
    "PICKLE_SUFFIXES",
    "SIGNATURE",
    "TRUSTED_SKLEARN_TYPES",
    "load_sklearn",
    "load_xgboost",
    "save_sklearn",
    "save_xgboost",
    "verify_manifest",
    "write_manifest",
]
