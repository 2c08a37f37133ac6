# The four entry points operators and scripts rely on. See README.md.
.PHONY: setup run test bench

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

test: setup
	@bash scripts/test.sh $(PYTEST_ARGS)

bench: setup
	@.venv/bin/python bench/run.py $(BENCH)
