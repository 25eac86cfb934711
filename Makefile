# The two commands of the README. Both install what they need first (scripts/bootstrap).
.PHONY: up test test-quick bootstrap down bench

bootstrap:
	bash scripts/bootstrap

up: bootstrap
	.venv/bin/trustops up

down:
	.venv/bin/trustops lab down

test:
	bash scripts/bootstrap --test
	.venv/bin/pytest -ra --durations=15

test-quick: bootstrap
	.venv/bin/pytest -ra -m "not lab"

bench: bootstrap
	.venv/bin/python -m tests.bench.lab_up
	.venv/bin/python -m tests.bench.monitor_bench
	.venv/bin/python -m tests.bench.lynis_bench
