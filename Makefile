# The README's commands. Each one installs what it needs: system packages (apt-get as root,
# otherwise the exact command is printed), then .venv with the package and its dependencies.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BUILD  := build/py
CXX_SOURCES := $(shell find core_cpp bindings -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name 'CMakeLists.txt' \))
PYTEST_ARGS ?=

.PHONY: all demo test test-all bench lint format deps build clean

all: build

deps:
	@sh appliance/system-packages.sh

$(VENV)/.venv-stamp: pyproject.toml | deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" "numpy>=1.26"
	@touch $@

$(VENV)/.build-stamp: $(VENV)/.venv-stamp $(CXX_SOURCES) CMakeLists.txt pyproject.toml
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]' \
	  -Cbuild-dir=$(BUILD) -Ccmake.define.SMARTCITY_BUILD_TESTS=ON
	@touch $@

build: deps $(VENV)/.build-stamp

demo: build
	$(PY) -m smartcity demo --appliance

test: build
	ctest --test-dir $(BUILD) --output-on-failure
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: build
	ctest --test-dir $(BUILD) --output-on-failure
	$(PY) -m pytest $(PYTEST_ARGS)

BENCH_VENV := build/bench-venv
$(BENCH_VENV)/.stamp:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q trackers
	touch $@

bench: build $(BENCH_VENV)/.stamp
	$(PY) bench/decode.py
	$(PY) bench/render.py
	$(PY) bench/tracker.py
	$(PY) bench/bus.py
	$(PY) bench/engine.py
	$(PY) bench/memory.py
	$(PY) bench/accuracy.py
	$(PY) bench/api.py

lint: build
	$(VENV)/bin/ruff check smartcity tests bench models
	$(VENV)/bin/ruff format --check smartcity tests bench models
	clang-format --dry-run --Werror $(filter %.cpp %.hpp %.cu,$(CXX_SOURCES))
	$(VENV)/bin/mypy

format: build
	$(VENV)/bin/ruff format smartcity tests bench models
	clang-format -i $(filter %.cpp %.hpp %.cu,$(CXX_SOURCES))

clean:
	rm -rf build $(VENV)
