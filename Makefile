# The two commands: `make demo` and `make test`. Both set everything up from a
# fresh clone (virtualenv, dependencies, the embedded broker and Redis) and stop
# every process they start, also on failure.

PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo $$p && break; done)
VENV   := .venv
BIN    := $(VENV)/bin
# pyenv's shims run only the selected versions; `make test PYTHON=python3.13` also finds an
# interpreter installed in pyenv but not selected.
PYENV_ALL := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | paste -sd: -)
PYEXE  := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	PYENV_VERSION="$(PYENV_ALL)" $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
PYVER  := $(shell $(PYEXE) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP  := $(VENV)/.installed-py$(PYVER)
LOCK   := requirements/dev.txt

.PHONY: demo demo-healthy test test-slow bench stats-table lint dev-up dev-down \
	compose-up compose-down upgrade clean chaos

# Installs from the lock only (hashes checked), then streammon itself without touching
# the resolver. A .venv made by another Python is rebuilt (`make test PYTHON=python3.13`).
$(STAMP): pyproject.toml setup.py $(LOCK)
	@test -n "$(PYEXE)" || { echo "streammon needs Python >= 3.11: none found as '$(PYTHON)' (set PYTHON=...)"; exit 1; }
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
		echo "rebuilding $(VENV) for Python $(PYVER)"; rm -rf $(VENV); fi
	$(PYEXE) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Re-resolve the lock to the newest releases, reinstall, and run the tests on them.
upgrade:
	@test -x $(BIN)/python || $(PYEXE) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	scripts/lock.sh
	rm -f $(STAMP)
	$(MAKE) test

demo: $(STAMP)
	$(BIN)/streammon demo

demo-healthy: $(STAMP)
	$(BIN)/streammon demo --no-regression

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

chaos: $(STAMP)
	$(BIN)/python scripts/chaos.py --seeds 10

bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

stats-table: $(STAMP)
	$(BIN)/python scripts/stats_table.py --write

compose-up: $(STAMP)
	scripts/compose_keys.sh
	docker compose up --build -d

compose-down:
	docker compose down -v

lint: $(STAMP)
	$(BIN)/ruff check streammon tests bench scripts
	$(BIN)/mypy

dev-up: $(STAMP)
	$(BIN)/streammon dev up

dev-down: $(STAMP)
	$(BIN)/streammon dev down

clean:
	rm -rf $(VENV) .streammon .pytest_cache .mypy_cache .ruff_cache
