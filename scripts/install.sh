#!/usr/bin/env bash
# Install Engage from this checkout, from the locked dependencies (uv.lock), into .venv (or into
# $UV_PROJECT_ENVIRONMENT when set):
#
#   scripts/install.sh                   the three packages with every extra and the development tools
#                                        (what `make` installs)
#   scripts/install.sh --licence-clean   the same without the `alibi` extra: neither alibi nor alibi-detect
#                                        (Business Source License 1.1) is installed; explanations serve
#                                        TreeSHAP, LIME, DiCE counterfactuals and reason codes, and the
#                                        drift detector runs its scipy backend
#   scripts/install.sh --no-dev          without the development tools (tests, linters, scanners)
#
# uv is taken from $UV or PATH, else installed from PyPI into .tools/ (as make does). An existing venv is
# made exact: --licence-clean removes alibi, alibi-detect and what only they need.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=(--all-extras)
dev=()
clean=0
for arg in "$@"; do
  case "$arg" in
    --licence-clean | --license-clean)
      extras=(--all-extras --no-extra alibi)
      clean=1
      ;;
    --no-dev) dev=(--no-dev) ;;
    -h | --help)
      sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install.sh: unknown option '$arg' (--licence-clean, --no-dev, --help)" >&2
      exit 2
      ;;
  esac
done

UV="${UV:-$(command -v uv 2>/dev/null || echo .tools/bin/uv)}"
if [[ ! -x "$UV" ]]; then
  python3 -m venv .tools
  .tools/bin/python -m pip install --quiet "uv>=0.5"
  UV=.tools/bin/uv
fi
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}" UV_PYTHON="${UV_PYTHON:-python3.11}"
"$UV" sync --frozen --all-packages "${extras[@]}" "${dev[@]}"
if ((clean)); then
  echo "install.sh: licence-clean: no alibi, no alibi-detect. Run with ENGAGE_EXPLAIN_LICENCE_CLEAN=true and" \
    "ENGAGE_DRIFT_BACKEND=scipy (the drift detector's default backend is alibi-detect)." >&2
fi
