# The two commands of the README:
#   make demo   set up (idempotent) and analyse the bundled sample clip on the embedded default
#   make test   set up (idempotent) and run the whole test suite (unit stage, then real-weights stage)
VENV ?= .venv
.PHONY: setup demo test test-unit test-weights bench

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/deemo analyze --sample

test: setup
	bash scripts/test.sh

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py
