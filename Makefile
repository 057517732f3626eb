# mmvlp developer entry points. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: help install test demo demo-tokenizers clean-venv

help:
	@echo "make install  create/reuse $(VENV) and install the pinned stack + mmvlp"
	@echo "make test     install, then run the test suite"
	@echo "make demo     install, then run the main demo"
	@echo "make demo-tokenizers  train the tiny VQ-KD and BSQ-ViT tokenizers on generated data"

install:
	@MMVLP_VENV="$(abspath $(VENV))" bash tools/install.sh

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) tools/demo/backbone_shapes.py configs/demo/beit3-tiny-p16_backbone-shapes.py

data/demo/captions_val.jsonl:
	$(PY) tools/data/make_demo_data.py --out data/demo

data/demo/text_spm.model: data/demo/captions_val.jsonl
	$(PY) tools/train_text_tokenizer.py data/demo/captions_train.jsonl \
		data/demo/text_spm --vocab-size 200 --field caption

# Train both demo tokenizers on the generated images and evaluate them on the
# held-out split (VQ-KD: codebook usage; BSQ-ViT: PSNR/SSIM), then QLIP stage 1
# with caption alignment. ~15 min on 2 cores.
demo-tokenizers: install data/demo/text_spm.model
	$(PY) tools/train.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py \
		--work-dir work_dirs/vqkd_vit-tiny-p16_hog_demo
	$(PY) tools/test.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py \
		work_dirs/vqkd_vit-tiny-p16_hog_demo/iter_600.pth
	$(PY) tools/train.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py \
		--work-dir work_dirs/bsqvit_vit-tiny-p8_demo
	$(PY) tools/test.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py \
		work_dirs/bsqvit_vit-tiny-p8_demo/iter_1000.pth
	$(PY) tools/train.py configs/tokenizers/bsqvit-text_vit-tiny-p8_demo.py \
		--work-dir work_dirs/bsqvit-text_vit-tiny-p8_demo

clean-venv:
	rm -rf $(VENV)
