# The `make demo` smoke run: build a tiny BEiT-3 from this config and print
# the output shapes for image, text and image+text inputs.
_base_ = ['../_base_/models/beit3-tiny-p16.py']
default_scope = 'mmvlp'

model = dict(max_text_len=64, out_indices=(1, 3), out_type='featmap')
demo = dict(batch_size=2, text_len=16)
