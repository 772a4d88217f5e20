#!/usr/bin/env bash
# make pipeline-local: Kubeflow Pipelines standalone (the release pinned in manifests/install/versions.env)
# on the kind cluster of `make kind-up`, the components image loaded into kind, the pipeline compiled and
# submitted to it (uploaded as a new version, one run started) through a port-forward of the KFP API.
# The runs sign what they promote with the development key (made when missing: engage keys generate):
# the Secrets engage-signing-key (its private half, for the promote step) and engage-signing-public-keys
# (the public half, for the evaluate step's champion) in the namespace kubeflow.
# DRY_RUN=1 prints the commands without running them (see lib.sh).
# Settings: IMAGE_TAG (default: the engage version), KFP_PORT (8888), PIPELINE_PARAMS (space-separated
# NAME=VALUE pipeline parameters, e.g. "rows=20000 seed=7"), PIPELINE_SCHEDULE (a cron with seconds, e.g.
# '0 0 2 * * *': also create the recurring run), ENGAGE_SIGNING_DEV_DIR (artifacts/signing: the development
# key pair, as engage reads it).
# The components image must exist locally: make deploy-local (or make images) builds it.
set -euo pipefail
# shellcheck source=scripts/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KFP_PORT="${KFP_PORT:-8888}"
OUT="artifacts/kind"

need_docker_engine
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/), or run python scripts/fetch_k8s_tools.py and put .tools/bin on PATH"
need curl "install curl"
need git "install git (kubectl apply -k fetches the KFP manifests from GitHub with it)"
load_versions
need_cluster
image_tag
COMPONENTS="${IMAGE_REPO}/engage-components:${IMAGE_TAG}"
if ! dry; then
  docker image inspect "$COMPONENTS" >/dev/null 2>&1 || die "no image ${COMPONENTS}: run make deploy-local (or make images) first"
fi
K=(kubectl --context "$CONTEXT")

# 1. KFP standalone: cluster-scoped resources (CRDs, namespace kubeflow), then the platform-agnostic install
KFP="github.com/kubeflow/pipelines/manifests/kustomize"
run "${K[@]}" apply -k "${KFP}/cluster-scoped-resources?ref=${KFP_VERSION}"
run "${K[@]}" wait --for=condition=Established crd/applications.app.k8s.io --timeout=60s
run "${K[@]}" apply -k "${KFP}/env/platform-agnostic?ref=${KFP_VERSION}"
run "${K[@]}" wait --for=condition=Available deployment --all -n kubeflow --timeout=900s

# 2. the image every step runs on (no registry push: kind nodes get it from here)
run kind load docker-image --name "$CLUSTER" "$COMPONENTS"

# 3. the signing keys the promote and evaluate steps mount (pipelines/engage_pipeline.py): the private key
# as the entry engage-signing.pem, where ENGAGE_SIGNING_KEY_FILE points
dev_signing_key
apply_secret kubeflow engage-signing-key "engage-signing.pem=${SIGNING_KEY}"
apply_secret kubeflow engage-signing-public-keys "$SIGNING_PUBLIC_KEY"

# 4. the KFP API on localhost, then compile and submit
HOST="http://localhost:${KFP_PORT}"
forward "${OUT}/kfp-port-forward.log" "${HOST}/apis/v2beta1/healthz" "${K[@]}" port-forward -n kubeflow svc/ml-pipeline "${KFP_PORT}:8888"
run "$UV" run --frozen --no-sync engage pipeline compile --out "${OUT}/engage_pipeline.yaml"
submit=("$UV" run --frozen --no-sync engage pipeline submit --host "$HOST" --experiment engage)
read -r -a params <<<"${PIPELINE_PARAMS:-}"
for param in "${params[@]}"; do
  submit+=(--param "$param")
done
if [[ -n "${PIPELINE_SCHEDULE:-}" ]]; then
  submit+=(--schedule "$PIPELINE_SCHEDULE")
fi
run "${submit[@]}"
dry || note "submitted; the KFP UI: kubectl --context ${CONTEXT} port-forward -n kubeflow svc/ml-pipeline-ui 8081:80, then http://localhost:8081"
