# The two commands: `make run` (the local stack with a demo catalog) and `make test`.
# Both work in a virtual environment in .venv that scripts/setup makes:
# `make run` installs only what running needs, `make test` adds the test tools.
.PHONY: setup setup-run run test bench

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
# Tools the tests start by name (sam, playwright) live in the venv too.
export PATH := $(VENV)/bin:$(PATH)

setup:
	./scripts/setup test

setup-run:
	./scripts/setup run

run: setup-run
	$(PY) -m pictrace serve --demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.run
