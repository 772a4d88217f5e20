#!/usr/bin/env bash
# make kind-up: a local Kubernetes cluster for Engage on kind, with what Engage runs on, at the versions
# pinned in manifests/install/versions.env: cert-manager, the Prometheus Operator CRDs, and KServe in
# Standard deployment mode (raw Deployments, no Knative). Safe to run again: an existing cluster is kept
# and the installs are re-applied. DRY_RUN=1 prints the commands without running them (see lib.sh).
# Prerequisites: docker (with a running engine), kind, kubectl; git is not needed here.
set -euo pipefail
# shellcheck source=scripts/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_docker_engine
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/), or run python scripts/fetch_k8s_tools.py and put .tools/bin on PATH"
load_versions

if ! dry; then
  installed="$(kind version 2>/dev/null | awk '{print $2}')"
  [[ "$installed" == "$KIND_VERSION" ]] ||
    note "kind ${installed:-unknown} is not the pinned ${KIND_VERSION}: the node image ${KIND_NODE_IMAGE%%@*} was built for ${KIND_VERSION}"
fi

# 1. the cluster (kept when it exists)
if ! dry && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  note "kind cluster '${CLUSTER}' exists: kept (kind delete cluster --name ${CLUSTER} to start over)"
else
  run kind create cluster --name "$CLUSTER" --config manifests/kind/cluster.yaml --image "$KIND_NODE_IMAGE" --wait 180s
fi
K=(kubectl --context "$CONTEXT")

# 2. cert-manager: KServe's webhook certificates
run "${K[@]}" apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
run "${K[@]}" wait --for=condition=Available deployment --all -n cert-manager --timeout=300s

# 3. the Prometheus Operator CRDs the chart's PodMonitor / ServiceMonitor / PrometheusRule need
crds=()
for kind in podmonitors servicemonitors prometheusrules; do
  run "${K[@]}" apply --server-side -f "https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/${PROMETHEUS_OPERATOR_VERSION}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml"
  crds+=("crd/${kind}.monitoring.coreos.com")
done
run "${K[@]}" wait --for=condition=Established "${crds[@]}" --timeout=60s

# 4. KServe (CRDs + controller; server-side apply: the CRDs are too large for a client-side apply's
# annotation), then Standard as the default deployment mode, then its cluster resources (the storage
# initializer that fetches pvc:// and s3:// models, the serving runtimes), which its webhook checks
KSERVE="https://github.com/kserve/kserve/releases/download/${KSERVE_VERSION}"
run "${K[@]}" apply --server-side --force-conflicts -f "${KSERVE}/kserve.yaml"
run "${K[@]}" wait --for=condition=Available deployment/kserve-controller-manager -n kserve --timeout=300s
run "${K[@]}" patch configmap inferenceservice-config -n kserve --type merge \
  -p '{"data":{"deploy":"{\"defaultDeploymentMode\": \"Standard\"}"}}'
run "${K[@]}" rollout restart deployment/kserve-controller-manager -n kserve
run "${K[@]}" rollout status deployment/kserve-controller-manager -n kserve --timeout=300s
retry 5 10 "${K[@]}" apply --server-side --force-conflicts -f "${KSERVE}/kserve-cluster-resources.yaml"

if ! dry; then
  mode="$("${K[@]}" get configmap inferenceservice-config -n kserve -o 'jsonpath={.data.deploy}')"
  [[ "$mode" == *'"Standard"'* ]] || die "KServe's default deployment mode is not Standard: ${mode}"
  echo "kind cluster '${CLUSTER}' (context ${CONTEXT}) is ready: KServe ${KSERVE_VERSION} in Standard mode, cert-manager ${CERT_MANAGER_VERSION}, Prometheus Operator CRDs ${PROMETHEUS_OPERATOR_VERSION}. Next: make deploy-local" >&2
fi
