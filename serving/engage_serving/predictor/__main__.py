"""``python -m engage_serving.predictor``: serve a model bundle's heads with KServe (V1 and V2 REST)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from engage_serving._server import load_or_explain, serve, server_parser, setup_logging

    parser = server_parser(
        "python -m engage_serving.predictor",
        "Engage predictor: engagement score, churn probability and lifetime value, on KServe's V1 and V2 REST",
    )
    parser.add_argument(
        "--logger_url",
        default=None,
        help="post each request and response there as CloudEvents, as KServe's InferenceService logger does "
        "in a cluster (for a local stack: the drift detector); never delays a prediction",
    )
    args = parser.parse_args(argv)
    from engage.contract import load_contract

    setup_logging(args, load_contract(args.contract))
    from ._model import PredictorModel

    model = PredictorModel(args.model_name, args)
    reason = load_or_explain(args.model_name, model.load)
    model.not_ready_reason = reason if not model.ready else None
    serve(
        model, args, routes=model.routes(), not_ready=lambda: None if model.ready else model.not_ready_reason
    )


if __name__ == "__main__":
    main(sys.argv[1:])
