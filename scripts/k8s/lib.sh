# shellcheck shell=bash
# Shared by scripts/k8s/*.sh (sourced, never run): the pinned versions, DRY_RUN, prerequisite checks and
# one-line errors.
#
# DRY_RUN=1: every command that would touch Docker, kind or a cluster (and every step that builds or
# fetches) is printed, one per line, as `+ word word ...` (words shell-quoted only when they need it),
# and none of them runs; nor do the prerequisite checks, so a dry run needs no docker, kind, kubectl or
# helm on PATH. Without DRY_RUN the same lines are printed before each command runs (like `set -x`).
# Notes and errors go to stderr, so stdout holds only the `+ ` lines.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT="$(basename "$0")"
DRY_RUN="${DRY_RUN:-0}"
CLUSTER="${KIND_CLUSTER:-engage}"
# shellcheck disable=SC2034  # CONTEXT, IMAGE_REPO, IMAGES: used by the scripts that source this file
CONTEXT="kind-${CLUSTER}"
# the pinned versions; a test points this at a copy to prove every URL is built from it
VERSIONS_FILE="${ENGAGE_VERSIONS_FILE:-${ROOT}/manifests/install/versions.env}"
# uv as the Makefile finds it: on PATH, else the one `make` bootstraps into .tools/
UV="${UV:-$(command -v uv 2>/dev/null || echo "${ROOT}/.tools/bin/uv")}"
# shellcheck disable=SC2034
IMAGE_REPO="ghcr.io/engage-ml"
# shellcheck disable=SC2034
IMAGES=(components predictor explainer drift-detector)

cd "$ROOT" || exit 1

die() {
  echo "${SCRIPT}: $*" >&2
  exit 1
}

note() {
  echo "${SCRIPT}: $*" >&2
}

dry() {
  [[ "$DRY_RUN" == 1 ]]
}

# a word as a shell reads it back: bare when safe, else single-quoted
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

show() {
  local line="+" word
  for word in "$@"; do
    line+=" $(quote "$word")"
  done
  echo "$line"
}

# run CMD ARGS...: print it, then run it unless DRY_RUN=1
run() {
  show "$@"
  dry || "$@"
}

# retry ATTEMPTS SECONDS CMD ARGS...: print once, run until it succeeds (webhooks take a moment to serve)
retry() {
  local attempts="$1" pause="$2" i
  shift 2
  show "$@"
  dry && return 0
  for ((i = 1; i <= attempts; i++)); do
    "$@" && return 0
    ((i < attempts)) && note "attempt ${i}/${attempts} failed; again in ${pause}s" && sleep "$pause"
  done
  die "failed ${attempts} times: $*"
}

# background CMD ARGS...: print it with a trailing &, start it unless DRY_RUN=1, stop it when the script
# ends; its output goes to LOG
BG_PID=""
background() {
  local log="$1"
  shift
  echo "$(show "$@") &"
  dry && return 0
  mkdir -p "$(dirname "$log")"
  "$@" >"$log" 2>&1 &
  BG_PID=$!
  # shellcheck disable=SC2064  # expand the pid now
  trap "kill ${BG_PID} 2>/dev/null || true" EXIT
}

# need CMD HINT: fail with one line when CMD is not on PATH (skipped by a dry run)
# forward LOG URL COMMAND...: a port-forward in the background (see background), then up to 30 s until
# URL answers; it says so at once if the port-forward stops
forward() {
  local log=$1 url=$2
  shift 2
  background "$log" "$@"
  dry && return 0
  for _ in $(seq 30); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$BG_PID" 2>/dev/null || die "kubectl port-forward stopped: see ${log}"
    sleep 1
  done
}

need() {
  dry && return 0
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH: $2"
}

need_docker_engine() {
  need docker "install Docker (https://docs.docker.com/engine/install/)"
  dry && return 0
  docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine: start it (docker info shows why)"
}

need_cluster() {
  dry && return 0
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || die "no kind cluster '${CLUSTER}': run make kind-up first"
}

# the pinned versions: KEY=value lines, checked before they are used
load_versions() {
  [[ -f "$VERSIONS_FILE" ]] || die "${VERSIONS_FILE} does not exist"
  local key
  while IFS= read -r key || [[ -n "$key" ]]; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*=[^[:space:]\'\"\$\`]+$ ]] || die "${VERSIONS_FILE}: not a KEY=value line: ${key}"
  done <"$VERSIONS_FILE"
  # shellcheck source=manifests/install/versions.env
  source "$VERSIONS_FILE"
  for key in CERT_MANAGER_VERSION KSERVE_VERSION KFP_VERSION PROMETHEUS_OPERATOR_VERSION KIND_VERSION KIND_NODE_IMAGE; do
    [[ -n "${!key:-}" ]] || die "${VERSIONS_FILE}: ${key} is not set"
  done
}

# the tag `make images` gives the images (the engage version, made OCI-safe); IMAGE_TAG overrides it
image_tag() {
  if [[ -z "${IMAGE_TAG:-}" ]]; then
    IMAGE_TAG="$("$UV" run --frozen --no-sync python -c 'from engage_serving.deploy._settings import image_tag; import engage; print(image_tag(engage.__version__))')" ||
      die "cannot read the engage version with ${UV}: run make run (or make test) once to create .venv"
  fi
  [[ "$IMAGE_TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "IMAGE_TAG '${IMAGE_TAG}' is not an image tag"
}

# the development signing key pair (docs/registry.md "Signed versions"): where `engage` makes it on first
# publish, so the versions `make run` promoted are signed with it
SIGNING_DIR="${ENGAGE_SIGNING_DEV_DIR:-artifacts/signing}"
# shellcheck disable=SC2034  # SIGNING_KEY, SIGNING_PUBLIC_KEY: used by the scripts that source this file
SIGNING_KEY="${SIGNING_DIR}/dev-signing-key.pem"
# shellcheck disable=SC2034
SIGNING_PUBLIC_KEY="${SIGNING_DIR}/dev-signing-key.pub.pem"

# dev_signing_key: make the development key pair when there is none yet (engage keys generate)
dev_signing_key() {
  [[ -f "$SIGNING_KEY" ]] && return 0
  run "$UV" run --frozen --no-sync engage keys generate --out "$SIGNING_DIR" --name dev-signing-key
}

# apply_secret NAMESPACE NAME FROM_FILE...: create or update a generic Secret from files (each
# `[ENTRY=]FILE`, as kubectl's --from-file), idempotently: `kubectl create --dry-run=client -o yaml`
# piped into a server-side apply (a client-side apply would copy the key into the
# last-applied-configuration annotation, which `kubectl describe` prints); printed as that one pipeline
apply_secret() {
  local namespace="$1" name="$2" from
  shift 2
  local create=(kubectl --context "$CONTEXT" create secret generic "$name" -n "$namespace")
  for from in "$@"; do
    create+=("--from-file=${from}")
  done
  create+=(--dry-run=client -o yaml)
  local apply=(kubectl --context "$CONTEXT" apply --server-side --force-conflicts -f -)
  echo "$(show "${create[@]}") | $(show "${apply[@]}" | cut -c3-)"
  dry && return 0
  "${create[@]}" | "${apply[@]}"
}

# the kubeconfig `kind create cluster` wrote the context into: the first of $KUBECONFIG, else ~/.kube/config
kubeconfig_path() {
  local first="${KUBECONFIG:-}"
  first="${first%%:*}"
  echo "${first:-${HOME}/.kube/config}"
}
