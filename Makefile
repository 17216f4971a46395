# Plantsite: `make run` to use it, `make test` to test it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
export PORT HOST

.PHONY: run test venv services clean loadtest bench bench-e2e bench-familiarity gpu-check

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	@mkdir -p var
	@scripts/ensure_redis
	$(VENV)/bin/python manage.py migrate --noinput
	$(VENV)/bin/python manage.py bootstrap_demo
	@echo ""
	@echo "Plantsite is starting at http://$(HOST):$(PORT)/"
	@echo "Log in with one of the accounts in .demo-credentials (printed above on the first run)."
	@echo "Press Ctrl-C to stop the web server, the workers and the sweeper."
	$(VENV)/bin/honcho start -f Procfile

services:
	@scripts/test_services

test: $(STAMP) services
	$(VENV)/bin/python -m pytest

gpu-check: $(STAMP)
	$(VENV)/bin/python scripts/gpu_check --require-gpu

# CPU benchmarks (each a few minutes on 2 cores): inference paths, then training.
bench: $(STAMP)
	$(VENV)/bin/python bench/bench_inference.py
	$(VENV)/bin/python bench/bench_train.py

# How often the familiarity check and the confidence alone flag photos of a class held out of
# training, generated plants and noise (a few minutes on 2 cores: it trains a model).
bench-familiarity: $(STAMP)
	$(VENV)/bin/python bench/bench_familiarity.py $(BENCH_FAMILIARITY_ARGS)

# A benchmark, not a test: e.g. make loadtest LOADTEST_ARGS="--uploads 100 --clients 16"
LOADTEST_ARGS ?= --uploads 1000 --clients 16
loadtest: $(STAMP) services
	$(VENV)/bin/python bench/loadtest.py $(LOADTEST_ARGS)

# Upload -> final over the real stack at client concurrency 1, 4 and 16, and the worker alone,
# e.g. make bench-e2e BENCH_E2E_ARGS="--uploads-per-level 20"
BENCH_E2E_ARGS ?= --levels 1,4,16 --uploads-per-level 100
bench-e2e: $(STAMP) services
	$(VENV)/bin/python bench/bench_e2e.py $(BENCH_E2E_ARGS)

clean:
	rm -rf $(VENV) var media db.sqlite3
