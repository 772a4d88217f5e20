"""Fuzzing the servers' HTTP APIs: no client mistake may ever get a 5xx, and no request may crash a server.

schemathesis generates requests from each server's own OpenAPI document (KServe's routes, including V2
``/infer`` bodies from its request model, and the V1 ``:predict`` / ``:explain`` bodies KServe leaves
untyped, described here from the contract), in its positive and negative modes, with the path's model
name generated and set to the served model (so bodies reach the decoders, not only the 404 of an unknown
model); hypothesis adds what that document cannot describe: arbitrary JSON and near-valid rows on V1
``:predict``, whose body KServe leaves untyped, and the drift detector's CloudEvents. The governance API
(``engage governance serve``) is fuzzed from its app's OpenAPI document (it serves none: every route but
``/healthz`` takes a token) with an admin token, and without one (then nothing is ever a 2xx).

Every request sent is counted, per server and per operation, with its status. Seeded: a failure
reproduces with the same ``ENGAGE_FUZZ_SEED``. ``make test`` sends ``ENGAGE_FUZZ_CASES`` (default
:data:`QUICK_CASES`) OpenAPI cases per server; ``make fuzz`` sends the issue's 1,000 and writes the
counts to ``ENGAGE_FUZZ_RESULTS`` (``benchmarks/results/fuzz.json``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.serving_support import Server, run_server

pytestmark = pytest.mark.fuzz

#: the issue's bar: generated OpenAPI cases per server
BAR = 1_000
#: OpenAPI cases per server under plain ``make test`` (the full bar takes minutes on two cores)
QUICK_CASES = 200
CASES = int(os.environ.get("ENGAGE_FUZZ_CASES", QUICK_CASES))
SEED = int(os.environ.get("ENGAGE_FUZZ_SEED", "19"))
#: hypothesis bodies per property (each sends one to three requests)
BODIES = max(60, CASES // 5)
RESULTS = os.environ.get("ENGAGE_FUZZ_RESULTS")
TIMEOUT = 60.0


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    """Seeded, no example database, no deadline: a failure reproduces with the same seed."""
    chosen = settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    return lambda test: seed(SEED)(chosen(test))


# --- counting every request -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Every request sent to one server: its operation and status."""

    operations: dict[str, Counter[int]] = field(default_factory=dict)
    openapi: set[str] = field(default_factory=set)
    seconds: float = 0.0
    alive_after: bool | None = None
    log_path: Path | None = None

    def record(self, operation: str, status: int, *, openapi: bool = False) -> None:
        self.operations.setdefault(operation, Counter())[status] += 1
        if openapi:
            self.openapi.add(operation)

    def cases(self, *, openapi: bool | None = None) -> int:
        return sum(
            sum(c.values())
            for op, c in self.operations.items()
            if openapi is None or (op in self.openapi) == openapi
        )

    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for counter in self.operations.values():
            total.update(counter)
        return total

    def tracebacks(self) -> dict[str, int]:
        """The exceptions the server logged with a traceback, by type (a 4xx should log none)."""
        found: Counter[str] = Counter()
        if self.log_path is None or not self.log_path.is_file():
            return {}
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "Traceback" not in line:
                continue
            try:
                lines = str(json.loads(line).get("exc_info", "")).splitlines()
            except (ValueError, AttributeError):
                lines = []
            # the exception's line: "kserve.errors.ModelNotFound: ..." (its message may span lines)
            names = [m.group(1) for m in map(_EXCEPTION_LINE.match, reversed(lines)) if m]
            found[names[0] if names else "(unparsed)"] += 1
        return dict(found.most_common())

    def to_json(self) -> dict[str, Any]:
        statuses = self.statuses()
        return {
            "cases": self.cases(),
            "openapi_cases": self.cases(openapi=True),
            "hypothesis_cases": self.cases(openapi=False),
            "five_xx": sum(n for s, n in statuses.items() if s >= 500),
            "statuses": {str(s): n for s, n in sorted(statuses.items())},
            "alive_and_ready_after": self.alive_after,
            "log_tracebacks": self.tracebacks(),
            "duration_seconds": round(self.seconds, 1),
            "operations": {
                op: {
                    "source": "schemathesis" if op in self.openapi else "hypothesis",
                    "cases": sum(c.values()),
                    "statuses": {str(s): n for s, n in sorted(c.items())},
                }
                for op, c in sorted(self.operations.items())
            },
        }


TALLIES: dict[str, Tally] = {}
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*(?:Error|Exception)): ")


@pytest.fixture(scope="module", autouse=True)
def fuzz_results() -> Iterator[None]:
    """Write every server's counts to ``ENGAGE_FUZZ_RESULTS`` when the module ends (passed or not)."""
    started = time.monotonic()
    yield
    if not RESULTS:
        return
    import hypothesis

    servers = {name: tally.to_json() for name, tally in TALLIES.items()}
    report = {
        "benchmark": "fuzz",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": SEED,
        "cases_per_server_target": CASES,
        "bar": BAR,
        "meets_bar": {n: s["openapi_cases"] >= BAR for n, s in servers.items()},
        "five_xx": sum(s["five_xx"] for s in servers.values()),
        "total_cases": sum(s["cases"] for s in servers.values()),
        "duration_seconds": round(time.monotonic() - started, 1),
        "sources": {
            "model servers": "each server's GET /openapi.json (KServe's routes), the V1 :predict / :explain "
            "bodies typed from the contract; positive and negative cases; plus hypothesis bodies",
            "governance": "create_app().openapi() (the server publishes none); with an admin token, and "
            "with none, a malformed and an unknown one",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "schemathesis": schemathesis.__version__,
            "hypothesis": hypothesis.__version__,
        },
        "servers": servers,
    }
    path = Path(RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(autouse=True)
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's time (generation and requests, not the server's start) counts for its servers."""
    started = time.monotonic()
    yield
    for name in ("predictor", "explainer", "drift_detector", "governance"):
        if name in request.fixturenames and name in TALLIES:
            TALLIES[name].seconds += time.monotonic() - started


@dataclass
class Target:
    """A server under fuzzing: its process, one keep-alive client, its tally."""

    name: str
    server: Server
    ready_path: str = "/v2/health/ready"
    client: httpx.Client = field(init=False)
    session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.server.url, timeout=TIMEOUT)
        self.session = requests.Session()
        TALLIES.setdefault(self.name, Tally()).log_path = self.server.log_path

    @property
    def tally(self) -> Tally:
        return TALLIES[self.name]

    def post(
        self, path: str, body: Any, *, label: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST ``body`` as Python's json writes it: NaN and Infinity as bare words, as careless clients do."""
        content = json.dumps(body, allow_nan=True).encode()
        return self.send("POST", path, content, label=label, headers=headers)

    def send(
        self, method: str, path: str, content: bytes, *, label: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        answer = self.client.request(
            method, path, content=content, headers={"content-type": "application/json", **(headers or {})}
        )
        self.tally.record(f"hypothesis: {label}", answer.status_code)
        return answer

    def assert_alive(self) -> None:
        """Not crashed: the process runs and answers ready."""
        alive = self.server.process.poll() is None and self.client.get(self.ready_path).status_code == 200
        self.tally.alive_after = alive
        assert alive, f"{self.name} is down or not ready after fuzzing:\n{self.server.log()[-3000:]}"
        # a client's mistake is a 4xx and one counted line, never a logged traceback (a log flood)
        assert self.tally.tracebacks() == {}, f"{self.name} logged tracebacks: {self.tally.tracebacks()}"

    def close(self) -> None:
        self.client.close()
        self.session.close()


def fuzz_openapi(
    target: Target,
    schema: Any,
    *,
    cases: int,
    fixed: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    check: Callable[[Any, Any], None] | None = None,
    label: str = "",
) -> dict[str, int]:
    """Every operation of ``schema`` fed schemathesis-generated requests, positive and negative, with the
    path parameters in ``fixed`` both generated and set; at least ``cases`` requests in all (an operation
    without parameters has one request to send). The pytest plugin of schemathesis 4.32 does not run on
    pytest 9, so its strategies are used directly. Returns the requests sent per operation."""
    operations = [result.ok() for result in schema.get_all_operations()]
    varied = [op for op in operations if _has_inputs(op)]
    per_operation = math.ceil(cases / max(1, len(varied)))
    sent: dict[str, int] = {}
    for operation in operations:
        name = f"{operation.label}{label}"
        pinned = {k: v for k, v in (fixed or {}).items() if k in operation.path}
        examples = per_operation if operation in varied else 1
        sent[name] = _fuzz_operation(target, operation, name, examples, pinned, headers, check)
    return sent


def _fuzz_operation(
    target: Target,
    operation: Any,
    name: str,
    examples: int,
    pinned: dict[str, str],
    headers: dict[str, str] | None,
    check: Callable[[Any, Any], None] | None,
) -> int:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if pinned:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=pinned))
    sent = 0

    @fuzz_settings(examples)
    @given(case=st.one_of(strategies))
    def call(case: Any) -> None:
        nonlocal sent
        answer = case.call(
            base_url=target.server.url, session=target.session, headers=headers, timeout=TIMEOUT
        )
        target.tally.record(name, answer.status_code, openapi=True)
        sent += 1
        assert answer.status_code < 500, (
            f"{case.method} {case.formatted_path}: {answer.status_code} {answer.text[:300]}"
        )
        if check is not None:
            check(case, answer)

    call()
    return sent


def _has_inputs(operation: Any) -> bool:
    return any(
        len(part) for part in (operation.path_parameters, operation.query, operation.headers, operation.body)
    )


# --- the model servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    log = tmp_path_factory.mktemp("fuzz") / "predictor.log"
    with run_server("engage_serving.predictor", ["--model_dir", str(model_folder / "model")], log) as server:
        target = Target("predictor", server)
        yield target
        target.close()


@pytest.fixture(scope="module")
def explainer(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    log = tmp_path_factory.mktemp("fuzz") / "explainer.log"
    env = {"ENGAGE_EXPLAIN_LIME_SAMPLES": "200", "ENGAGE_EXPLAIN_COUNTERFACTUAL_SAMPLES": "200"}
    args = ["--model_dir", str(model_folder / "model"), "--licence_clean", "true"]
    with run_server("engage_serving.explainer", args, log, env=env) as server:
        target = Target("explainer", server)
        yield target
        target.close()


@pytest.fixture(scope="module")
def drift_detector(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    log = tmp_path_factory.mktemp("fuzz") / "drift.log"
    args = ["--model_dir", str(model_folder / "model"), "--backend", "scipy"]
    with run_server("engage_serving.drift_detector", args, log) as server:
        target = Target("drift_detector", server)
        yield target
        target.close()


@pytest.fixture(scope="module")
def valid_row(model_folder: Path) -> dict[str, Any]:
    from engage.tables import read_table

    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    row: dict[str, Any] = json.loads(frame.head(1).to_json(orient="records"))[0]
    return row


@pytest.fixture(scope="module")
def row_schema(model_folder: Path) -> dict[str, Any]:
    """A JSON schema of one row as the contract describes it (types, bounds, nullability; the levels of
    categories and strings as training saw them): what KServe's OpenAPI leaves untyped in V1 bodies."""
    from engage.contract import load_contract
    from engage.tables import read_table

    contract = load_contract()
    reference = read_table(model_folder / "drift_reference" / "reference.parquet")
    properties = {}
    for name in reference.columns:
        column = contract.columns[name]
        kind = column.type.value
        spec: dict[str, Any]
        if kind in ("string", "category"):
            spec = {"enum": sorted(map(str, reference[name].dropna().unique()))}
        else:
            spec = {"type": {"integer": "integer", "boolean": "boolean"}.get(kind, "number")}
            spec.update(
                {k: v for k, v in (("minimum", column.min), ("maximum", column.max)) if v is not None}
            )
        properties[name] = {"anyOf": [spec, {"type": "null"}]} if column.nullable else spec
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


def typed_openapi(target: Target, row: dict[str, Any], heads: list[str]) -> Any:
    """The server's OpenAPI document, with the V1 bodies KServe leaves untyped (``:predict``,
    ``:explain``) described: ``{"instances": [row, ...]}`` (and the explainer's ``method`` and ``head``),
    so that schemathesis's positive cases reach the model and its negative ones the decoders."""
    document = target.client.get("/openapi.json").json()
    instances = {"type": "array", "items": row, "minItems": 1, "maxItems": 3}
    for path, operations in document["paths"].items():
        if not path.endswith((":predict", ":explain")):
            continue
        body: dict[str, Any] = {"instances": instances}
        if path.endswith(":explain"):
            body |= {"method": {"enum": ["tree_shap", "reasons"]}, "head": {"enum": heads}}
        schema = {
            "type": "object",
            "properties": body,
            "required": ["instances"],
            "additionalProperties": False,
        }
        operations["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return schemathesis.openapi.from_dict(document)


def fuzz_model_server(target: Target, row: dict[str, Any], model_folder: Path) -> dict[str, int]:
    heads = sorted(p.name for p in (model_folder / "model").iterdir() if p.is_dir())
    schema = typed_openapi(target, row, heads)
    sent = fuzz_openapi(target, schema, cases=CASES, fixed={"model_name": "engage"})
    assert sum(sent.values()) >= CASES, sent
    target.assert_alive()
    return sent


def test_predictor_openapi_routes_never_answer_5xx(
    predictor: Target, row_schema: dict[str, Any], model_folder: Path
) -> None:
    sent = fuzz_model_server(predictor, row_schema, model_folder)
    assert sent["POST /v2/models/{model_name}/infer"] >= CASES // 16
    assert sent["POST /v1/models/{model_name}:predict"] >= CASES // 16


def test_explainer_openapi_routes_never_answer_5xx(
    explainer: Target, row_schema: dict[str, Any], model_folder: Path
) -> None:
    assert (
        fuzz_model_server(explainer, row_schema, model_folder)["POST /v1/models/{model_name}:explain"]
        >= CASES // 16
    )


def test_drift_detector_openapi_routes_never_answer_5xx(
    drift_detector: Target, row_schema: dict[str, Any], model_folder: Path
) -> None:
    assert (
        fuzz_model_server(drift_detector, row_schema, model_folder)["POST /v1/models/{model_name}:predict"]
        >= CASES // 16
    )


# KServe's base model answers 501 to a verb a server does not implement: found by this fuzzing
NOT_SERVED = [
    ("predictor", "/v1/models/engage:explain", "the predictor does not answer :explain"),
    ("drift_detector", "/v1/models/engage:explain", "the drift detector does not answer :explain"),
    ("explainer", "/v1/models/engage:predict", "the explainer does not answer :predict or /infer"),
    ("explainer", "/v2/models/engage/infer", "the explainer does not answer :predict or /infer"),
]


@pytest.mark.parametrize(("name", "path", "message"), NOT_SERVED)
@pytest.mark.parametrize("content_type", ["application/json", "application/cloudevents+json"])
def test_a_verb_the_server_does_not_answer_is_404_not_501(
    request: pytest.FixtureRequest,
    valid_row: dict[str, Any],
    name: str,
    path: str,
    message: str,
    content_type: str,
) -> None:
    target: Target = request.getfixturevalue(name)
    one = {"name": "tenure_days", "shape": [1], "datatype": "FP64", "data": [valid_row["tenure_days"]]}
    body = {"inputs": [one]} if path.endswith("/infer") else {"instances": [valid_row]}
    answer = target.post(path, body, label=f"not served: {path}", headers={"content-type": content_type})
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"error": answer.json()["error"], "reason": "not_served"}
    assert answer.json()["error"].startswith(message)


# --- hypothesis: what the OpenAPI documents leave untyped ---------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: any JSON, and any JSON where the protocols put rows (V1 instances, V2 inputs)
BODIES_JSON = (
    JSON
    | st.builds(lambda rows: {"instances": rows}, st.lists(JSON, max_size=3))
    | st.builds(lambda tensors: {"inputs": tensors}, st.lists(JSON, max_size=3))
)
ODD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
)


def _assert_client_error_or_ok(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    body = answer.json()
    if answer.status_code >= 400:
        assert isinstance(body.get("error"), str)
        assert body["error"]


@fuzz_settings(BODIES)
@given(body=BODIES_JSON)
def test_predictor_takes_any_json_without_a_5xx(predictor: Target, body: Any) -> None:
    for path in ("/v1/models/engage:predict", "/v2/models/engage/infer"):
        _assert_client_error_or_ok(predictor.post(path, body, label=f"any JSON -> POST {path}"))


@fuzz_settings(BODIES)
@given(data=st.data())
def test_near_valid_rows_are_answered_or_refused_precisely(
    predictor: Target, valid_row: dict[str, Any], data: Any
) -> None:
    row = dict(valid_row)
    for name in data.draw(st.lists(st.sampled_from(sorted(row)), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            row[name] = data.draw(ODD_VALUES)
        else:
            del row[name]
    path = "/v1/models/engage:predict"
    answer = predictor.post(path, {"instances": [row]}, label=f"near-valid row -> POST {path}")
    _assert_client_error_or_ok(answer)
    if answer.status_code == 422:
        assert answer.json()["details"][0]["field"] in valid_row


@fuzz_settings(BODIES)
@given(body=st.binary(max_size=64))
def test_bytes_that_are_not_json_get_400(predictor: Target, body: bytes) -> None:
    path = "/v1/models/engage:predict"
    answer = predictor.send("POST", path, body, label=f"any bytes -> POST {path}")
    assert answer.status_code in (200, 400, 413, 422), answer.text


@fuzz_settings(BODIES)
@given(body=BODIES_JSON, method=st.sampled_from(["tree_shap", "reasons", "lime", "nope", None]))
def test_explainer_takes_any_json_without_a_5xx(
    explainer: Target, valid_row: dict[str, Any], body: Any, method: Any
) -> None:
    path = "/v1/models/engage:explain"
    _assert_client_error_or_ok(explainer.post(path, body, label=f"any JSON -> POST {path}"))
    broken = {**valid_row, "plan": body} if isinstance(body, str | int | None) else {}
    request = {"instances": [broken], **({"method": method} if method else {})}
    _assert_client_error_or_ok(explainer.post(path, request, label=f"near-valid row -> POST {path}"))


@fuzz_settings(BODIES)
@given(
    body=BODIES_JSON,
    kind=st.sampled_from(
        ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response", "other"]
    ),
)
def test_drift_detector_takes_any_event_without_a_5xx(drift_detector: Target, body: Any, kind: str) -> None:
    headers = {"ce-type": kind, "ce-id": "1", "ce-source": "fuzz", "ce-specversion": "1.0"}
    _assert_client_error_or_ok(
        drift_detector.post("/", body, label="any CloudEvent -> POST /", headers=headers)
    )
    path = "/v1/models/engage:predict"
    _assert_client_error_or_ok(drift_detector.post(path, body, label=f"any JSON -> POST {path}"))


def test_every_model_server_is_still_alive_and_ready(
    predictor: Target, explainer: Target, drift_detector: Target
) -> None:
    for target in (predictor, explainer, drift_detector):
        target.assert_alive()


# --- the governance API ------------------------------------------------------------------------------------


@dataclass
class Governance:
    target: Target
    schema: Any
    admin: str


@pytest.fixture(scope="module")
def governance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governance]:
    """A real ``engage governance serve`` on a SQLite file with one admin token; the OpenAPI document of
    the same app (the server does not publish it: every route but /healthz takes a token)."""
    from engage.governance import Tokens, open_database
    from engage.governance.api import create_app
    from tests.integration.test_governance_api import serve

    root = tmp_path_factory.mktemp("fuzz-governance")
    url = f"sqlite:///{root}/governance.db"
    db = open_database(url)
    try:
        admin = Tokens(db).create("fuzz-admin", "admin", actor="fuzz")[1]
    finally:
        db.dispose()
    schema = schemathesis.openapi.from_dict(create_app(url).openapi())
    with serve(url, root) as served:
        server = Server(served.process, served.url, served.log)  # type: ignore[arg-type]
        target = Target("governance", server, ready_path="/healthz")
        yield Governance(target, schema, admin)
        target.close()


def test_governance_api_never_answers_5xx_to_an_admin(governance: Governance) -> None:
    sent = fuzz_openapi(
        governance.target,
        governance.schema,
        cases=CASES,
        headers={"Authorization": f"Bearer {governance.admin}"},
        label=" (admin token)",
    )
    assert sum(sent.values()) >= CASES
    governance.target.assert_alive()


NO_TOKEN = {
    "": {},
    " (malformed token)": {"Authorization": "Bearer"},
    " (unknown token)": {"Authorization": "Bearer eng_" + "A" * 43},
}


@pytest.mark.parametrize("label", list(NO_TOKEN))
def test_governance_api_without_a_valid_token_is_never_2xx(governance: Governance, label: str) -> None:
    def refused(case: Any, answer: Any) -> None:
        if case.path != "/healthz":
            assert answer.status_code in (401, 404, 405, 413), (
                f"{case.method} {case.formatted_path}: {answer.status_code} {answer.text[:300]}"
            )

    sent = fuzz_openapi(
        governance.target,
        governance.schema,
        cases=max(1, CASES // 4),
        headers=NO_TOKEN[label],
        check=refused,
        label=label or " (no token)",
    )
    assert sum(sent.values()) >= CASES // 4
    governance.target.assert_alive()


def test_governance_body_that_does_not_parse_is_401_without_a_token(governance: Governance) -> None:
    # found by the fuzzing above: FastAPI's "error parsing the body" (400) came before the token check
    path = "/v1/review/some-item/decision"
    for headers, status in (({}, 401), ({"Authorization": f"Bearer {governance.admin}"}, 400)):
        answer = governance.target.send(
            "POST", path, b"\x80", label=f"unparseable body -> POST {path}", headers=headers
        )
        assert answer.status_code == status, answer.text
        assert set(answer.json()) == {"error"}
