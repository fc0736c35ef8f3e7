# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make run    install what the server needs, migrate, serve on http://127.0.0.1:8000 (SQLite under ./var/, local workers)
#   make test   install that and the test extras (.[dev]: ray, playwright, onnxruntime, ...), run the tests
# `make install` is everything the tests need (CI runs it, then `make test`).
PYTHON ?= python3
VENV ?= .venv
# torch==2.13.0 from the configured indexes (PyPI: the CUDA build on Linux x86-64); README shows the CPU-only and CUDA index URLs
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Two stamps: the server's own install, and the test extras over it. Whenever the first is redone (either
# pyproject.toml changed) it is newer than the second, so the next `make test` installs the extras again.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install run test test-fast bench clean

# pip compiles every installed module to bytecode one file at a time (~34 s of torch, Ray and the rest on the 2-core
# machine); compileall does the same on every core afterwards (~22 s), skipping what is already compiled. A module
# that does not compile (some packages ship such test data) is left to Python, as pip leaves it.
# Packages' own test suites (`tests/` folders: ~16% of the files) are never imported and not compiled.
PIP_FAST := --no-compile
COMPILE = $(BIN)/python -m compileall -q -j 0 -x 'site-packages/.+/tests/' $(VENV)/lib >/dev/null || true
# fitserve's own modules, compiled before each run (only those changed since the last): where PYTHONDONTWRITEBYTECODE
# is set, every process (each served API, pool, fork server, CLI call) would otherwise compile what it imports
# again, ~0.15 s of CPU each, and a test run starts some 250 of them.
SOURCES := service workers server modelzoo client tests alembic bench
COMPILE_SOURCES = $(BIN)/python -m compileall -q -j 0 $(SOURCES) >/dev/null

# The client (client/: the `fitserve` command, no server) first: the server depends on it, and it is on no index.
$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_FAST) $(TORCH)
	$(BIN)/pip install -q $(PIP_FAST) -e ./client -e .
	# a venv from before the client was a distribution of its own: replacing the old server took its command along
	test -x $(BIN)/fitserve || $(BIN)/pip install -q $(PIP_FAST) --no-deps --force-reinstall -e ./client
	$(COMPILE)
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q $(PIP_FAST) -e '.[dev]'
	$(COMPILE)
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(STAMP)
	$(COMPILE_SOURCES)
	$(BIN)/fitserve serve

# Three processes, each taking whole files (or folders: tests/conftest.py SHARED_FOLDERS). On the 2-core
# machine, quiet, one fresh-clone CI each on the same commit: 13:32 of tests at three against 16:00 at two (many
# tests wait on leases, polls and time limits). TEST_PROCS=0 runs it in this process alone.
TEST_PROCS ?= 3
XDIST = $(if $(filter 0,$(TEST_PROCS)),,-n $(TEST_PROCS) --dist loadfile)
test: $(DEV_STAMP)
	$(COMPILE_SOURCES)
	$(BIN)/python -m pytest $(XDIST)

# The inner loop: the in-process suite alone, on SQLite (tests that need a served process are marked `served`)
test-fast: $(DEV_STAMP)
	$(COMPILE_SOURCES)
	$(BIN)/python -m pytest $(XDIST) -m "not served"

clean:
	rm -rf $(VENV) var
