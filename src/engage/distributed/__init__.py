"""The distributed engine: Dask, for tables larger than one machine.

``dask.dataframe`` reads partitioned Parquet, each step maps the library's own per-table code over the
partitions (``map_partitions``), and ``xgboost.dask`` trains on the workers. Here the cluster is a
``LocalCluster`` beside the step (:func:`dask_client`); on EKS the pipeline step starts a ``DaskCluster``
through the Dask Kubernetes operator and names its scheduler (``ENGAGE_DASK_SCHEDULER``). Dask is an
extra (``engage[dask]``): it is imported inside the functions.
"""

from ._cluster import dask_client
from ._frame import conformed, read_frame
from ._quality import CheckCount, DistributedQuality, check_distributed
from ._settings import DaskSettings, Engine
from ._train import DistributedTrainResult, SplitPlan, assign_parts, plan_split, train_distributed

__all__ = [
    "CheckCount",
    "DaskSettings",
    "DistributedQuality",
    "DistributedTrainResult",
    "Engine",
    "SplitPlan",
    "assign_parts",
    "check_distributed",
    "conformed",
    "dask_client",
    "plan_split",
    "read_frame",
    "train_distributed",
]
