# The two commands of the README:
#   make demo   set up (idempotent) and analyse the bundled sample clip on the embedded default
#   make test   set up (idempotent) and run the whole test suite (unit, real-weights, serving stages)
#   make serve  set up the vLLM environment too, then `deemo serve` (vLLM + gateway + UI)
VENV ?= .venv
.PHONY: setup demo test serve bench

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/deemo analyze --sample

test: setup
	bash scripts/test.sh

serve: setup
	bash scripts/setup-vllm.sh
	$(VENV)/bin/deemo serve

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py
