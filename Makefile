# One command to run the example, one to run the tests; each creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run tour research test lint bench clean trifecta

# strands-agents pins older mcp/otel releases than dev's but runs with them: installed without its pins
STRANDS := strands-agents==1.62.0 opentelemetry-instrumentation-threading==0.66b1 \
	opentelemetry-instrumentation==0.66b1 docstring-parser==0.18.0 watchdog==6.0.0 wrapt==2.5.2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(STRANDS)
	touch $(STAMP)

run: $(STAMP)  ## the main job: the refund desk agent, offline (scripted model, SQLite store)
	$(BIN)/python examples/refund_desk/demo.py

research: $(STAMP)  ## the research desk, offline: a local web shop in Chromium, a skill, an API with a credential
	$(BIN)/python examples/research_desk/demo.py

tour: $(STAMP)  ## the governance kernel on its own, step by step
	$(BIN)/python examples/kernel_tour.py

trifecta: $(STAMP)  ## information flow: private data + untrusted content, and the way out is refused
	$(BIN)/python examples/support_inbox/demo.py

test: $(STAMP)  ## lint and the import contracts, then the whole test suite, then the benchmarks in quick mode
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q
	$(BIN)/python -m benchmarks --quick

lint: $(STAMP)  ## ruff, and the import contracts of pyproject.toml (DESIGN §17)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports

bench: $(STAMP)  ## the full benchmark table
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
