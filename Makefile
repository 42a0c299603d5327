# hamster_runtime — `make demo` and `make test` set everything up first (idempotent, seconds when unchanged).
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_loopback.xml
export MUJOCO_GL ?= egl
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast bench soak clean

setup:
	@HAMSTER_VENV=$(VENV) bash tools/setup.sh

demo: setup
	$(PY) -m hamster_apps.demo $(DEMO_ARGS)

# Every tier: unit tests, node/graph tests (marker `graph`) and builds/long runs (marker `slow`).
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The inner loop: everything that starts no node, graph or build (well under 90 s here).
test-fast: setup
	$(PY) -m pytest -q -m "not graph and not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run_all.py $(BENCH_SCRIPTS)

SOAK_MINUTES ?= 30
soak: setup
	$(PY) bench/bench_soak.py --minutes $(SOAK_MINUTES) --out bench/results_soak.json

clean:
	rm -rf build runs .pytest_cache
