# The two commands: `make run` (the local stack with a demo catalog) and `make test`.
.PHONY: setup run test bench

setup:
	./scripts/setup

run: setup
	python3 -m pictrace serve --demo

test: setup
	python3 -m pytest

bench:
	python3 -m benchmarks.run
