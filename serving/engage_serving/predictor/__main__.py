"""``python -m engage_serving.predictor``: serve a model bundle's heads with KServe (V1 and V2 REST)."""

from __future__ import annotations

import argparse
import sys


def predictor_parser() -> argparse.ArgumentParser:
    """The predictor's flags: every Engage server's, plus the logger URL and the fast routes."""
    from engage_serving._server import flag, server_parser
    from engage_serving._settings import ServingSettings

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
    parser.add_argument(
        "--fast_routes",
        type=flag,
        default=ServingSettings().fast_routes,
        help="true (default): answer V1 :predict and V2 /infer JSON on Engage's HTTP layer, with the statuses "
        "and bodies of KServe's own routes (tested) at a fifth of their overhead; false: through KServe's "
        "FastAPI data plane (ENGAGE_SERVING_FAST_ROUTES)",
    )
    parser.add_argument(
        "--fairness_threshold",
        type=_probability,
        default=None,
        help="the decision threshold of the classification heads in engage_prediction_group_total (predictions "
        "by protected group: positive at or above it), as the promotion policy's fairness.decision_threshold; "
        "default: the model bundle's, else 0.5",
    )
    add_review_flags(parser)
    return parser


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a probability strictly between 0 and 1")
    return value


def add_review_flags(parser: argparse.ArgumentParser) -> None:
    """Human review (off unless ``--review true``): edge cases queued, opt-outs flagged, overrides returned."""
    from engage.governance import GovernanceSettings
    from engage_serving._server import flag

    settings = GovernanceSettings()
    parser.add_argument(
        "--review",
        type=flag,
        default=False,
        help="true: route edge cases to the human review queue (scores near a decision threshold, outliers, "
        "customers who opted out of automated decisions, flagged automated=false) and return reviewers' "
        "overrides with the customer's next prediction; false (default): none of it",
    )
    parser.add_argument(
        "--governance_db",
        default=None,
        help="with --review: the governance database URL (default: ENGAGE_GOVERNANCE_DATABASE_URL, else the "
        "embedded SQLite file); its being down never fails a prediction",
    )
    parser.add_argument(
        "--review_band",
        type=float,
        default=settings.review_threshold_band,
        help="a classification probability this close to its decision threshold goes to review "
        "(ENGAGE_GOVERNANCE_REVIEW_THRESHOLD_BAND)",
    )
    parser.add_argument(
        "--review_outlier_z",
        type=float,
        default=settings.review_outlier_z,
        help="a numeric feature this many robust deviations (IQR / 1.349) from the training median marks an "
        "outlier (ENGAGE_GOVERNANCE_REVIEW_OUTLIER_Z)",
    )


def main(argv: list[str] | None = None) -> None:
    from engage_serving._server import load_or_explain, serve, setup_logging

    args = predictor_parser().parse_args(argv)
    from engage.contract import load_contract

    setup_logging(args, load_contract(args.contract))
    from ._model import PredictorModel

    model = PredictorModel(args.model_name, args)
    reason = load_or_explain(args.model_name, model.load)
    model.not_ready_reason = reason if not model.ready else None
    serve(
        model,
        args,
        routes=model.routes() if args.fast_routes else (),
        not_ready=lambda: None if model.ready else model.not_ready_reason,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
