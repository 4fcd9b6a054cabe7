#!/usr/bin/env bash
# The whole test suite, in stages (the README's test command runs `make test`, which sets up first):
#   1. unit     tiny random-initialised models, synthetic media, CLI errors     (no real weights)
#   2. weights  the real embedded default: conversions vs sources, analyze end to end, the notebook
# Extra pytest arguments apply to both stages, e.g. `bash scripts/test.sh -x`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${DEEMO_VENV:-.venv}/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
echo "=== stage 1/2: unit tests"
"$PY" -m pytest -m "not weights and not gpu" "$@" || status=1
echo "=== stage 2/2: real-weights tests"
"$PY" -m pytest -m weights "$@" || status=1
exit $status
