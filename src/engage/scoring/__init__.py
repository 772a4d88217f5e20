"""Batch scoring: every customer of a table scored by one registry version, written as partitioned Parquet.

``engage score`` and the pipeline's ``batch-score`` step call :func:`score_table`. Rows are checked by
the predictor's own rules (:func:`check_frame`), scored by the predictor's own calls (:class:`BatchScorer`),
and the files appear whole or not at all (:class:`Destination`). See docs/scoring.md.
"""

from ._checks import Checked, check_frame, schema_problem
from ._output import Destination
from ._parts import Part, data_sha256, plan_parts, read_part
from ._run import MAX_REJECTED, PartResult, ScoreReport, score_part, score_table
from ._scorer import BatchScorer, Scores

__all__ = [
    "MAX_REJECTED",
    "BatchScorer",
    "Checked",
    "Destination",
    "Part",
    "PartResult",
    "ScoreReport",
    "Scores",
    "check_frame",
    "data_sha256",
    "plan_parts",
    "read_part",
    "schema_problem",
    "score_part",
    "score_table",
]
