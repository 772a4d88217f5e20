"""``train_table``: refuse a table that fails its contract, train on it, write the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from engage.contract import Contract
from engage.errors import TableRefused
from engage.model import TrainConfig
from engage.policy import PromotionPolicy

from ._outputs import write_outputs
from ._train import TrainResult, train

__all__ = ["train_table"]


def train_table(
    data: Path,
    contract: Contract,
    out_dir: Path,
    *,
    now: datetime | None = None,
    policy: PromotionPolicy | None = None,
    config: TrainConfig | None = None,
    heads: Sequence[str] | None = None,
    champion: Path | None = None,
) -> TrainResult:
    """Check ``data`` against the contract (refusing a table that fails it), train, write the outputs."""
    from engage.quality import run_gate

    gate = run_gate(data, contract, now=now, great_expectations=False)
    if gate.verdict == "fail":
        raise TableRefused(
            f"refusing to train on {data}: it fails data contract {contract.contract} ({gate.reason}); "
            f"run `engage validate {data} --out-dir DIR` and train on DIR/remediated.parquet"
        )
    frame = gate.validation.table.frame
    result = train(frame, contract, policy=policy, config=config, heads=heads, champion=champion)
    write_outputs(result, frame, out_dir)
    return result
