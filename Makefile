# mmvlp developer entry points. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: help install test test-demo test-reliability test-dist demo demo-seeds demo-backbone \
	demo-tokenizers demo-transfer demo-transfer-smoke demo-vl demo-vl-smoke \
	demo-zero-shot demo-zero-shot-smoke demo-bsq-targets benchmarks clean-venv

help:
	@echo "make install  create/reuse $(VENV) and install the pinned stack + mmvlp"
	@echo "make test     install, then run the test suite"
	@echo "make demo     install, then the main demo: pretrain a tiny BEiT-3 on generated data (about 6 min)"
	@echo "make test-demo  check the demo's metrics (after make demo)"
	@echo "make demo-seeds  the demo with seeds 0 1 2 (SEEDS=...) and the spread of its claims (docs/demo.md)"
	@echo "make test-reliability  the tests of docs/reliability.md (bad data, kills, NaN, checkpoints, loading, configs)"
	@echo "make test-dist  every task's demo config trained and evaluated with 2 processes (gloo on CPU), metrics vs 1 process; CPU smoke of the GPU checks"
	@echo "make demo-transfer  fine-tune the demo's BEiT-3 and a scratch one on generated cls/det/seg (~8 min, after make demo)"
	@echo "make demo-transfer-smoke  the same, 2 iterations per run (CI)"
	@echo "make demo-backbone  build a BEiT-3 from a config and print output shapes"
	@echo "make demo-tokenizers  train the tiny VQ-KD and BSQ-ViT tokenizers on generated data"
	@echo "make benchmarks  mmvlp vs the official implementations, side by side (docs/benchmarks.md)"
	@echo "make demo-vl  fine-tune the demo-pretrained BEiT-3 and the same model from scratch on generated retrieval, VQA and captioning (after make demo)"
	@echo "make demo-vl-smoke  the same, 2 iterations per run (CI)"
	@echo "make demo-zero-shot  zero-shot colour classification and embedding neighbours with demo-vl's retrieval models (after make demo-vl)"
	@echo "make demo-zero-shot-smoke  the same on 32 scenes with demo-vl-smoke's models (CI)"
	@echo "make demo-bsq-targets  pretrain the demo BEiT-3 on text-aligned BSQ (QLIP-style) tokens and compare with make demo's VQ-KD run (docs/qlip.md)"

install:
	@MMVLP_VENV="$(abspath $(VENV))" bash tools/install.sh

test: install
	$(PY) -m pytest tests -m "not demo"

# The main demo: generated captioned scenes -> text + visual tokenizers ->
# BEiT-3 pretraining on images, captions and pairs -> held-out metrics
# against the strongest simple baselines (work_dirs/demo/metrics.json), a
# picture of what the model learned (work_dirs/demo/what_it_learned.png) and
# the time of each step (work_dirs/demo/timings.json); `make test-demo`
# asserts the claims; CI runs both. docs/demo.md explains the numbers.
demo: install
	$(PY) tools/demo/pretrain_demo.py --work-dir work_dirs/demo

# The demo with several training seeds and the spread of each claim's gain
# over its strongest baseline (work_dirs/demo_seeds/summary.json; the
# thresholds of `make test-demo` sit inside it). One demo per seed.
SEEDS ?= 0 1 2
demo-seeds: install
	$(PY) tools/demo/demo_seeds.py --seeds $(SEEDS)

test-demo: install
	$(PY) -m pytest tests -m demo

RELIABILITY_TESTS := tests/test_fault_injection.py tests/test_bad_data.py \
	tests/test_webdataset_shards.py tests/test_interruption.py \
	tests/test_nonfinite.py tests/test_checkpoint_files.py \
	tests/test_checkpoint_safety.py tests/test_converter.py \
	tests/test_config_check.py tests/test_checkpoint_fit.py \
	tests/test_pretrained_loading.py
test-reliability: install
	$(PY) -m pytest $(RELIABILITY_TESTS)

# Every task's demo config under 2 processes: tools/dist_train.sh (3
# iterations) and tools/dist_test.sh, metrics compared with 1 process, on
# tiny generated data and checkpoints made on the way; then the CPU parts of
# the first-GPU-run checks (docs/scaling.md).
test-dist: install
	$(PY) tools/analysis_tools/dist_matrix.py --work-dir work_dirs/dist_matrix
	$(PY) benchmarks/gpu_dist_check.py --cpu-smoke --work-dir work_dirs/gpu_dist_check_smoke

# Transfer (after `make demo`, which it runs when its outputs are missing):
# the demo-pretrained tiny BEiT-3 and the same model from scratch, same
# budget, on generated classification (mmpretrain), detection (mmdet) and
# segmentation (mmseg); work_dirs/demo_transfer/metrics.json. --check fails
# unless pretraining helps on all three.
work_dirs/demo/pretrain/last_checkpoint:
	$(MAKE) demo

demo-transfer: install work_dirs/demo/pretrain/last_checkpoint
	$(PY) tools/demo/transfer_demo.py --check

demo-transfer-smoke: install work_dirs/demo/pretrain/last_checkpoint
	$(PY) tools/demo/transfer_demo.py --max-iters 2 \
		--work-dir work_dirs/demo_transfer_smoke

demo-backbone: install
	$(PY) tools/demo/backbone_shapes.py configs/demo/beit3-tiny-p16_backbone-shapes.py

data/demo/captions_val.jsonl:
	$(PY) tools/data/make_demo_data.py --out data/demo

data/demo/text_spm.model: data/demo/captions_val.jsonl
	$(PY) tools/train_text_tokenizer.py data/demo/captions_train.jsonl \
		data/demo/text_spm --vocab-size 200 --field caption

# Train both demo tokenizers on the generated images and evaluate them on the
# held-out split (VQ-KD: codebook usage; BSQ-ViT: PSNR/SSIM), then QLIP stage 1
# with caption alignment. ~15 min on 2 cores. Pictures (image | token map
# [| reconstruction]): work_dirs/{vqkd_vit-tiny-p16_hog,bsqvit_vit-tiny-p8}_demo/tokenizer.png.
demo-tokenizers: install data/demo/text_spm.model
	$(PY) tools/train.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py \
		--work-dir work_dirs/vqkd_vit-tiny-p16_hog_demo
	$(PY) tools/test.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py \
		work_dirs/vqkd_vit-tiny-p16_hog_demo/last_checkpoint
	$(PY) tools/train.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py \
		--work-dir work_dirs/bsqvit_vit-tiny-p8_demo
	$(PY) tools/test.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py \
		work_dirs/bsqvit_vit-tiny-p8_demo/last_checkpoint
	$(PY) tools/train.py configs/tokenizers/bsqvit-text_vit-tiny-p8_demo.py \
		--work-dir work_dirs/bsqvit-text_vit-tiny-p8_demo

# Side-by-side benchmarks against torchscale's BEiT3 and mmpretrain's VQKD
# (docs/benchmarks.md); each prints a RESULT line and writes
# work_dirs/benchmarks/<name>.json. The backbone step runs in bf16 where the
# CPU has bf16 units (AMX / AVX512-BF16), then in fp32. About 7 min on 2
# idle CPU cores.
benchmarks: install
	$(PY) benchmarks/backbone.py
	$(PY) benchmarks/backbone.py --dtype fp32 \
		--out work_dirs/benchmarks/backbone_fp32.json
	$(PY) benchmarks/tokenizer.py
	$(PY) benchmarks/data_pipeline.py

# Vision-language transfer: the demo-pretrained tiny BEiT-3 (make demo) and
# the same model from scratch, same budget, on generated retrieval, VQA and
# captioning; work_dirs/demo_vl/metrics.json. --check fails unless
# pretrained > scratch on all three.
demo-vl: install work_dirs/demo/pretrain/last_checkpoint
	$(PY) tools/demo/vl_demo.py --work-dir work_dirs/demo_vl --check

# QLIP-style tokens as MIM targets (after `make demo`, which it runs when its
# checkpoint is missing): the demo's text-aligned BSQ tokenizer at 48 px, the
# demo pretraining on its 18-bit tokens through the per-bit head (same data
# and budget), its evaluation, and the comparison with the VQ-KD run
# (work_dirs/demo_bsq/comparison.json; docs/qlip.md).
DEMO_BSQ := configs/demo/beit3-tiny-p8_demo-pretrain-bsq.py
demo-bsq-targets: install work_dirs/demo/pretrain/last_checkpoint
	$(PY) tools/train.py configs/demo/bsqvit-text_vit-tiny-p8_demo-tokenizer.py \
		--work-dir work_dirs/demo/bsq_tokenizer
	$(PY) tools/train.py $(DEMO_BSQ) --work-dir work_dirs/demo_bsq/pretrain
	$(PY) tools/analysis_tools/eval_demo_pretrain.py $(DEMO_BSQ) \
		"$$(cat work_dirs/demo_bsq/pretrain/last_checkpoint)" --data $(DEMO_DATA) \
		--out work_dirs/demo_bsq/metrics.json
	$(PY) tools/analysis_tools/compare_demo_targets.py work_dirs/demo/metrics.json \
		work_dirs/demo_bsq/metrics.json --out work_dirs/demo_bsq/comparison.json

demo-vl-smoke: install work_dirs/demo/pretrain/last_checkpoint
	$(PY) tools/demo/vl_demo.py --max-iters 2 --work-dir work_dirs/demo_vl_smoke

# Zero-shot classification and feature extraction (docs/features_zero_shot.md):
# demo-vl's retrieval models (fine-tuned from the demo pretraining and from
# scratch) classify held-out scenes by the colour of their largest object
# from prompts alone, and the nearest neighbours of extracted image
# embeddings are checked against chance; work_dirs/demo_zero_shot/
# metrics.json and pictures. --check fails unless the pretrained model beats
# chance and scratch.
work_dirs/demo_vl/retrieval/pretrained/last_checkpoint:
	$(MAKE) demo-vl

work_dirs/demo_vl_smoke/retrieval/pretrained/last_checkpoint:
	$(MAKE) demo-vl-smoke

demo-zero-shot: install work_dirs/demo_vl/retrieval/pretrained/last_checkpoint
	$(PY) tools/demo/zero_shot_demo.py --check

demo-zero-shot-smoke: install work_dirs/demo_vl_smoke/retrieval/pretrained/last_checkpoint
	$(PY) tools/demo/zero_shot_demo.py --vl-work-dir work_dirs/demo_vl_smoke \
		--max-images 32 --work-dir work_dirs/demo_zero_shot_smoke

clean-venv:
	rm -rf $(VENV)
