# chargenet: the commands a person (and CI) runs. `make help` lists them.
SHELL := /bin/bash
COMPONENTS := scripts/components/components.sh
PYTEST_ARGS ?=
# Let Python cache bytecode: the tests start many service subprocesses, each importing the stack.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup demo test lint format unit dev-up dev-down dev-status browser helm deploy-check up down bench-e2e bench-gateway bench-indexer bench-signer bench-gas

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install uv, the Python workspace and the Node packages (cached)
	@scripts/setup.sh

demo: setup ## the main job on the embedded default (one process, SQLite, in-process chain and bus)
	uv run chargenet demo

test: setup lint dev-up helm browser ## lint, type-check, then every test against the real Kafka, PostgreSQL and Hardhat
	eval "$$($(COMPONENTS) env)" && CHARGENET_REQUIRE_COMPONENTS=1 uv run pytest $(PYTEST_ARGS)

unit: setup ## the tests that need no external component (fast)
	uv run pytest -m "not kafka and not postgres and not hardhat" $(PYTEST_ARGS)

lint: setup ## ruff (lint and format check) and mypy --strict
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy libs services

format: setup ## apply ruff's formatting and safe fixes
	uv run ruff check --fix .
	uv run ruff format .

dev-up: setup ## install (cached) and start Kafka, PostgreSQL and the Hardhat node on 127.0.0.1
	$(COMPONENTS) install
	$(COMPONENTS) up

dev-down: ## stop them (`make dev-down CLEAN=1` also deletes their data)
	$(COMPONENTS) down $(if $(CLEAN),--clean,)

dev-status: ## what runs and whether it answers
	$(COMPONENTS) status

browser: ## Debian's chromium for the browser tests (apt)
	scripts/install-browser.sh

helm: ## build the real helm binary from its Go module (cached; seconds when warm)
	scripts/helm/install.sh

deploy-check: setup helm ## helm lint/template, strict Kubernetes validation, skaffold schema
	uv run pytest tests/deploy $(PYTEST_ARGS)

up: setup ## the distributed stack on this machine: every service its own process, real components
	uv run chargenet up

down: ## stop the distributed stack and the components
	uv run chargenet down --components

bench-e2e: setup ## sessions/s and start latency through the whole pipeline (distributed stack)
	uv run python bench/e2e.py

bench-gateway: setup ## OCPP gateway vs a bare websockets echo server
	uv run python bench/gateway.py

bench-indexer: setup ## registry catch-up vs raw eth_getLogs on a private Hardhat node
	uv run python bench/indexer.py

bench-signer: setup ## signer throughput vs naive send-and-wait
	uv run python bench/signer.py

bench-gas: setup ## gas per session, chargenet's contracts vs a naive ERC-20 escrow
	uv run python bench/gas.py
