#!/usr/bin/env bash
# make deploy-local: the production model of the local registry (artifacts/registry, made by `make run`)
# served by KServe on the kind cluster of `make kind-up`, and one prediction sent to it:
#   0. check the production version against the development signing key (made when missing: engage keys
#      generate), as the servers will;
#   1. build the four images (make images) and load them into kind;
#   2. the namespace, the Secret engage-signing-public-keys (that key's public half: every server mounts
#      it), then the kind overlay (drift detector, the engage-registry PVC, ...);
#   3. copy the registry onto the engage-registry PVC through a short-lived pod (Pod Security
#      "restricted"), where the InferenceService's storage initializer reads pvc://engage-registry/...;
#   4. engage deploy production --kubeconfig ... --context kind-engage, wait until the InferenceService is
#      Ready, port-forward the predictor and POST one row of the version's drift reference with curl.
# DRY_RUN=1 prints the commands without running them (see lib.sh).
# Settings: IMAGE_TAG (default: the engage version), LOCAL_PORT (8080), ENGAGE_REGISTRY_MODEL (customers),
# ENGAGE_DEPLOY_NAMESPACE / ENGAGE_DEPLOY_NAME / ENGAGE_DEPLOY_MODEL_NAME (as `engage deploy` reads them),
# ENGAGE_SIGNING_DEV_DIR (artifacts/signing: the development key pair, as engage reads it).
set -euo pipefail
# shellcheck source=scripts/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAMESPACE="${ENGAGE_DEPLOY_NAMESPACE:-engage}"
ISVC="${ENGAGE_DEPLOY_NAME:-engage-customers}"
MODEL_NAME="${ENGAGE_DEPLOY_MODEL_NAME:-engage}"
MODEL="${ENGAGE_REGISTRY_MODEL:-customers}"
LOCAL_PORT="${LOCAL_PORT:-8080}"
REGISTRY="artifacts/registry"
SYNC_POD="engage-registry-sync"
OUT="artifacts/kind"

need_docker_engine
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/), or run python scripts/fetch_k8s_tools.py and put .tools/bin on PATH"
need make "install make"
need curl "install curl"
load_versions
need_cluster
if ! dry; then
  [[ -d "${REGISTRY}/${MODEL}/versions" ]] || die "no model registry at ${REGISTRY}/${MODEL}: run make run first"
  [[ -f "${REGISTRY}/${MODEL}/aliases/production.json" ]] || die "${REGISTRY}/${MODEL} has no production version: make run promotes one when the gates pass"
fi
image_tag
K=(kubectl --context "$CONTEXT")

# 0. the signing key: the servers verify the version before loading it (docs/registry.md "Signed
# versions"); check it here as they will, rather than wait for an InferenceService that never gets ready
dev_signing_key
run env ENGAGE_SIGNING_PUBLIC_KEYS_FILE="$SIGNING_PUBLIC_KEY" ENGAGE_SIGNING_REQUIRED=true \
  "$UV" run --frozen --no-sync engage registry verify production --registry "$REGISTRY" ||
  die "the production version does not verify with ${SIGNING_PUBLIC_KEY}: sign it with that key (engage registry sign production --registry ${REGISTRY})"

# 1. images, built here and loaded into the kind nodes (nothing is pushed)
run make images IMAGE_TAG="$IMAGE_TAG"
for image in "${IMAGES[@]}"; do
  run kind load docker-image --name "$CLUSTER" "${IMAGE_REPO}/engage-${image}:${IMAGE_TAG}"
done

# 2. the namespace and the public key every server mounts (the Secret first: no pod waits for it), then
# the kind overlay
run "${K[@]}" apply -f manifests/base/namespace.yaml
apply_secret "$NAMESPACE" engage-signing-public-keys "$SIGNING_PUBLIC_KEY"
run "${K[@]}" apply -k manifests/overlays/kind

# 3. the registry onto the PVC: a pod of the components image (already in kind, has tar for kubectl cp)
# that only sleeps, mounts the claim at /registry and meets Pod Security "restricted" with a read-only
# root filesystem; it removes itself after 10 minutes if this script dies before deleting it
read -r -d '' OVERRIDES <<JSON || true
{"apiVersion": "v1", "spec": {
  "automountServiceAccountToken": false,
  "activeDeadlineSeconds": 600,
  "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                      "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "${SYNC_POD}", "image": "${IMAGE_REPO}/engage-components:${IMAGE_TAG}",
    "imagePullPolicy": "IfNotPresent", "command": ["sleep", "600"],
    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    "volumeMounts": [{"name": "registry", "mountPath": "/registry"}, {"name": "tmp", "mountPath": "/tmp"}]}],
  "volumes": [{"name": "registry", "persistentVolumeClaim": {"claimName": "engage-registry"}},
              {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]}}
JSON
# one line (the command is printed one per line)
OVERRIDES="${OVERRIDES//$'\n'/}"
while [[ "$OVERRIDES" == *"  "* ]]; do OVERRIDES="${OVERRIDES//  / }"; done
run "${K[@]}" delete pod "$SYNC_POD" -n "$NAMESPACE" --ignore-not-found --wait=true
run "${K[@]}" run "$SYNC_POD" -n "$NAMESPACE" --restart=Never --image="${IMAGE_REPO}/engage-components:${IMAGE_TAG}" \
  --labels=app.kubernetes.io/name=engage-registry-sync,app.kubernetes.io/part-of=engage --overrides="$OVERRIDES"
run "${K[@]}" wait --for=condition=Ready "pod/${SYNC_POD}" -n "$NAMESPACE" --timeout=180s
run "${K[@]}" cp --no-preserve=true "${REGISTRY}/${MODEL}" "${NAMESPACE}/${SYNC_POD}:/registry"
run "${K[@]}" exec -n "$NAMESPACE" "$SYNC_POD" -- test -f "/registry/${MODEL}/aliases/production.json" ||
  die "the registry did not arrive on the engage-registry PVC (kubectl cp ${REGISTRY}/${MODEL})"
run "${K[@]}" delete pod "$SYNC_POD" -n "$NAMESPACE" --wait=false

# 4. the InferenceService of the production version, through engage's own renderer and apply. Standard
# mode has no traffic split, so the whole traffic goes to the new version (--canary 100: no split field)
run "$UV" run --frozen --no-sync engage deploy production --registry "$REGISTRY" \
  --kubeconfig "$(kubeconfig_path)" --context "$CONTEXT" --canary 100 --out "${OUT}/inferenceservice.yaml"
run "${K[@]}" wait --for=condition=Ready "inferenceservice/${ISVC}" -n "$NAMESPACE" --timeout=600s

# one prediction: a row of the version's drift reference (rows the contract accepts, as engage serve --check sends)
run "$UV" run --frozen --no-sync python scripts/k8s/sample_request.py --registry "$REGISTRY" --ref production --out "${OUT}/request.json"
URL="http://localhost:${LOCAL_PORT}/v1/models/${MODEL_NAME}"
forward "${OUT}/port-forward.log" "$URL" "${K[@]}" port-forward -n "$NAMESPACE" "svc/${ISVC}-predictor" "${LOCAL_PORT}:80"
run curl -fsS -H 'content-type: application/json' --data "@${OUT}/request.json" "${URL}:predict"
if ! dry; then
  echo
  note "the predictor answered; InferenceService ${NAMESPACE}/${ISVC}, its manifest ${OUT}/inferenceservice.yaml"
fi
