# mmvlp developer entry points. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: help install test demo clean-venv

help:
	@echo "make install  create/reuse $(VENV) and install the pinned stack + mmvlp"
	@echo "make test     install, then run the test suite"
	@echo "make demo     install, then run the main demo"

install:
	@MMVLP_VENV="$(abspath $(VENV))" bash tools/install.sh

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) tools/demo/backbone_shapes.py configs/demo/beit3-tiny-p16_backbone-shapes.py

clean-venv:
	rm -rf $(VENV)
