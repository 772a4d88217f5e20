"""The model registry: versioned, content-addressed model bundles on a storage URI, with aliases.

A version is a verified model bundle named by the SHA-256 of its manifest, with the files that judged it
(evaluation, fairness report, model card, drift reference) and free-form facts (metrics, data hash,
pipeline run id, policy verdict). ``candidate``, ``production`` and ``previous`` are aliases that move,
each move recorded in an append-only audit trail. The storage is a local folder or ``s3://`` (fsspec);
a publish is atomic on both: see docs/registry.md.
"""

from ._models import AliasMove, AliasPointer, ModelVersion
from ._registry import ALIASES, Registry
from ._settings import RegistrySettings

__all__ = ["ALIASES", "AliasMove", "AliasPointer", "ModelVersion", "Registry", "RegistrySettings"]
