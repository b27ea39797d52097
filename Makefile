# dirobserver: developer entry points.  `make test` is also what CI runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: the venv is rebuilt only when setup.py
# (the list of dependencies) changes, or when an install failed half-way.
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run lint unit test bench soak clean

venv: $(STAMP)

# Editable install, so the checkout itself (and its twisted/plugins dropin)
# is what runs: edits take effect without reinstalling.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The demo configuration watches dir/stage1 and dir/stage2 and uses a
# valkey-server started by the daemon itself.
run: venv
	mkdir -p dir/stage1 dir/stage2
	$(BIN)/twistd -n dirobserver --config=directory_observer.ini --embedded-redis

# The quality gate: ruff (style, import order, likely bugs) over the code,
# the tests, the benchmark and the soak; mypy over the package, the benchmark
# and the soak (it found the burst budget's swapped arguments).  Settings in
# pyproject.toml.  Both run, so one look shows every complaint.
lint: venv
	@status=0; \
	$(BIN)/ruff check dirobserver tests bench soak || status=1; \
	$(BIN)/mypy dirobserver bench soak || status=1; \
	exit $$status

# `make test` passes the gate first, and so does CI (which runs `make test`);
# `make test LINT=0` skips it.  Not `LINT ?= 1`: GNU make predefines LINT
# (the C lint program, for its built-in rules), so `?=` would never set it;
# only a value from the command line or the environment is ours.
ifneq ($(filter default undefined,$(origin LINT)),)
LINT := 1
endif

# The edit-test loop: only the tests that start no subprocess and no server
# (seconds).  The others are marked `process` (pytest.ini); a test without
# the mark fails if it starts a process, so the split cannot drift.
unit: venv
	$(BIN)/python -m pytest -q -m "not process and not exclusive" tests

# Everything CI runs.
# Two workers (most tests wait on real processes); then, alone, the tests
# marked `exclusive` (they use up a per-user resource or the whole machine).
test: venv $(if $(filter 1,$(LINT)),lint)
	$(BIN)/python -m pytest -q -n 2 -m "not exclusive" tests
	$(BIN)/python -m pytest -q -m exclusive tests

bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# The chaos soak: SOAK_MINUTES of files and random faults, then the check
# (last line: one JSON object).  `make soak SOAK_ARGS="--seed 1234"` replays.
SOAK_MINUTES ?= 30
soak: venv
	$(BIN)/python -m soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# Build and cache artifacts only: dir/ may hold files someone put there.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache twisted/plugins/dropin.cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
