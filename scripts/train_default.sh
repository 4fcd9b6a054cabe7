#!/usr/bin/env bash
# Rebuild the shipped fine-tuned default from nothing but this repository (about 50 minutes on a
# 2-core CPU): synthetic corpus -> instruction rows -> deemo train -> deemo fuser train -> the delta in
# deemo_llama/defaults/trained (then `deemo models prepare` composes it; bench_default.py measures it).
#   bash scripts/train_default.sh [WORK]        (default WORK: /tmp/deemo-default)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/deemo-default}
D=.venv/bin/deemo
$D data synth "$W/synth" --clips 432 --seed 0 --workers 2
$D data build "$W/synth/manifest.jsonl" "$W/built" --kinds recognition,reasoning --experts fast --transcript whisper --split 0.5,0.17,0.33 --workers 2
$D train "$W/ckpt" --config cpu-default --set "data.train=$W/built" --set "data.feature_cache_dir=$W/features"
# the fuser is fitted on the clips the LLM never trained on (validation and test: 216 recognition rows);
# the held-out measure is the held-out spoken set (benchmarks/bench_default.py), not these splits
$D fuser train --checkpoint "$W/ckpt" --data "$W/built" --split validation,test --feature-cache "$W/features"
$D models export-default "$W/ckpt" --data "$W/built" --made-by "scripts/train_default.sh: deemo data synth --clips 432 --seed 0, deemo data build (experts fast, Whisper transcripts, reasoning composed from the Evidence), deemo train --config cpu-default, deemo fuser train --split validation,test"
# then: .venv/bin/deemo models prepare && .venv/bin/python benchmarks/bench_default.py --out results.json
