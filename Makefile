# One command runs the main job (make demo), one passes the tests (make test).
# Each makes its own virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench dist-check venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,redis,fast,bench,docs,lint,dist]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sgcache-layers demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html -q docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/bench_cache.py
	$(PY) benchmarks/bench_session.py
	$(PY) benchmarks/bench_queries.py
	@# bench_floor exits 1 when it misses a target (its FAIL lines say which); the rest still run.
	-$(PY) benchmarks/bench_floor.py
	$(PY) benchmarks/bench_farm.py

# dist-check: build the sdist and the wheel, check that they ship the licence (and the sdist
# the tests with their fixtures), install the sdist (not editable) into a fresh virtual
# environment with the test extra, and run a fast subset of its own tests from the unpacked
# sdist against that installed package.
DIST_TESTS ?= tests/test_cache.py tests/test_keys.py tests/test_packaging.py tests/test_imports.py
SDIST_FILES := LICENSE README.md pyproject.toml tests/conftest.py $(DIST_TESTS) \
	tests/fixtures/real-site-schema/README.md tests/fixtures/real-site-schema/schema.json \
	tests/fixtures/real-site-schema/schema_entity.json
WHEEL_FILES := sgcache_layers/__init__.py sgcache_layers/py.typed \
	sgcache_layers/testing/pytest_plugin.py

dist-check: $(STAMP)
	rm -rf dist && mkdir dist
	$(PY) -m build --outdir dist . >dist/build.log 2>&1 || { cat dist/build.log; exit 1; }
	@set -eu; unset PYTHONPATH; \
	sdist=$$(ls dist/*.tar.gz); wheel=$$(ls dist/*.whl); \
	$(PY) -c 'import sys, tarfile; print("\n".join(m.name.split("/", 1)[-1] \
	    for m in tarfile.open(sys.argv[1]) if m.isfile()))' "$$sdist" >dist/sdist-files.txt; \
	$(PY) -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' \
	    "$$wheel" >dist/wheel-files.txt; \
	for name in $(SDIST_FILES); do grep -qx "$$name" dist/sdist-files.txt \
	    || { echo "dist-check: $$sdist lacks $$name" >&2; exit 1; }; done; \
	for name in $(WHEEL_FILES); do grep -qx "$$name" dist/wheel-files.txt \
	    || { echo "dist-check: $$wheel lacks $$name" >&2; exit 1; }; done; \
	grep -qx 'sgcache_layers-[^/]*\.dist-info/licenses/LICENSE' dist/wheel-files.txt \
	    || { echo "dist-check: $$wheel lacks LICENSE" >&2; exit 1; }; \
	if grep -q '^tests/' dist/wheel-files.txt; then echo "dist-check: tests in $$wheel" >&2; exit 1; fi; \
	echo "dist-check: $$sdist: $$(wc -l <dist/sdist-files.txt) entries, with LICENSE, tests/ and fixtures"; \
	echo "dist-check: $$wheel: $$(wc -l <dist/wheel-files.txt) files, with LICENSE and py.typed"; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	tar -xzf "$$sdist" -C "$$tmp"; unpacked=$$(echo "$$tmp"/sgcache_layers-*); \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q "$$unpacked[test]"; \
	cd "$$unpacked"; \
	where=$$("$$tmp/venv/bin/python" -c 'import sgcache_layers; print(sgcache_layers.__file__)'); \
	case "$$where" in "$$tmp/venv/"*) ;; \
	    *) echo "dist-check: sgcache_layers came from $$where, not the venv" >&2; exit 1;; esac; \
	echo "dist-check: installed $$(basename "$$sdist") into a fresh venv; testing from $$unpacked"; \
	"$$tmp/venv/bin/pytest" -p no:cacheprovider -q $(DIST_TESTS)

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache dist
