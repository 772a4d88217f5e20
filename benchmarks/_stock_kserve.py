"""The KServe baseline of the serving benchmark: the stock ``xgbserver`` predict path, one booster.

Written for the benchmark (not KServe's code) to do what KServe's xgbserver does: ``load()`` finds the
one model file (``.bst``/``.json``/``.ubj``) in ``--model_dir`` and reads it with
``xgb.Booster(params={"nthread": n}, model_file=...)``; every request turns the v1 ``instances`` (a
list of rows of numbers) into a numpy array and a fresh ``xgb.DMatrix``, and answers
``{"predictions": booster.predict(dmatrix).tolist()}``. It is served by ``kserve.ModelServer`` with its
default settings (one process, KServe's own per-request latency log line).

One deviation, which every xgbserver user with this model would need: the booster names its features
and has native categorical splits, and xgboost (3.x) refuses a DMatrix without feature names for it
("data did not contain feature names"). So the per-request DMatrix is given the booster's own
``feature_names`` and ``feature_types`` (``'c'`` for the categorical columns, whose values are level
codes) with ``enable_categorical=True``. Like xgbserver, it predicts with every tree in the file: an
early-stopped model's ``best_iteration`` is not applied.

    python benchmarks/_stock_kserve.py --model_dir <bundle>/churn --model_name churn --http_port 8080
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MODEL_EXTENSIONS = (".bst", ".json", ".ubj")


def make_model(name: str, model_dir: str, nthread: int) -> Any:
    """A ``kserve.Model`` that serves the one xgboost model file in ``model_dir``."""
    import numpy as np
    import xgboost as xgb
    from kserve import Model
    from kserve.errors import InferenceError

    class StockXGBoost(Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name)
            self.booster: xgb.Booster | None = None

        def load(self) -> bool:
            files = [
                os.path.join(model_dir, f)
                for f in sorted(os.listdir(model_dir))
                if f.endswith(MODEL_EXTENSIONS) and os.path.isfile(os.path.join(model_dir, f))
            ]
            if len(files) != 1:
                raise RuntimeError(f"expected exactly one model file in {model_dir}, found {files}")
            self.booster = xgb.Booster(params={"nthread": nthread}, model_file=files[0])
            self.ready = True
            return True

        def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
            assert self.booster is not None
            try:
                dmatrix = xgb.DMatrix(
                    np.array(payload["instances"]),
                    feature_names=self.booster.feature_names,
                    feature_types=self.booster.feature_types,
                    enable_categorical=True,
                    nthread=nthread,
                )
                return {"predictions": self.booster.predict(dmatrix).tolist()}
            except Exception as e:
                raise InferenceError(str(e)) from e

    return StockXGBoost()


def main() -> None:
    from kserve import ModelServer, model_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True, help="folder holding exactly one xgboost model file")
    parser.add_argument("--nthread", type=int, default=1, help="xgboost threads (xgbserver's default: 1)")
    args, _ = parser.parse_known_args()
    model = make_model(args.model_name, args.model_dir, args.nthread)
    model.load()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc).start(
        [model]
    )


if __name__ == "__main__":
    main()
