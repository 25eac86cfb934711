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
	.venv/bin/pytest -ra

test-quick: bootstrap
	.venv/bin/pytest -ra -m "not lab"

bench: bootstrap
	.venv/bin/python tests/bench/lab_up.py
	.venv/bin/python tests/bench/monitor_bench.py
	.venv/bin/python tests/bench/lynis_bench.py
