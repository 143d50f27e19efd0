PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install build test test-slow test-debug bench lint clean

install:  ## install celeste with its test tools (builds the kernels)
	$(PIP) install -e '.[test]'

build:  ## rebuild the Cython kernels in place
	$(PYTHON) setup.py build_ext --inplace -j 2

test:  ## the default (fast) test suite
	$(PYTHON) -m pytest -q

test-slow:  ## the slow tests only
	$(PYTHON) -m pytest -q -m slow

test-debug:  ## rebuild with bounds checks, test, then rebuild the fast kernels
	CELESTE_CYTHON_DEBUG=1 $(PYTHON) setup.py build_ext --inplace -j 2
	$(PYTHON) -m pytest -q; status=$$?; \
	$(PYTHON) setup.py build_ext --inplace -j 2 && exit $$status

bench:  ## benchmarks (print their figures)
	$(PYTHON) -m bench

lint:
	$(PYTHON) -m ruff check celestecli tests bench setup.py

clean:
	rm -rf build/ *.egg-info .pytest_cache
	find pyx -name '*.c' -delete
	find celestecli pyx -name '*.so' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
