# The RandAugment of BEiT-3's vision-language recipes (unilm beit3
# randaug.py, from BLIP: 2 operations at magnitude 7 of 10 out of Identity,
# AutoContrast, Equalize, Brightness, Sharpness, ShearX/Y, TranslateX/Y and
# Rotate), with mmpretrain's operations; Identity is left out and the
# magnitude ranges are mmpretrain's closest ones (Shear 0.3, Translate 0.3
# of the side, Rotate 30 degrees, Brightness / Sharpness 1 +- 0.9), so the
# distortions are close to, not identical with, the official ones.
beit3_randaug = dict(
    type='mmpretrain.RandAugment',
    policies=[
        dict(type='mmpretrain.AutoContrast'),
        dict(type='mmpretrain.Equalize'),
        dict(type='mmpretrain.Brightness', magnitude_key='magnitude',
             magnitude_range=(0, 0.9)),
        dict(type='mmpretrain.Sharpness', magnitude_key='magnitude',
             magnitude_range=(0, 0.9)),
        dict(type='mmpretrain.Shear', magnitude_key='magnitude',
             magnitude_range=(0, 0.3), direction='horizontal'),
        dict(type='mmpretrain.Shear', magnitude_key='magnitude',
             magnitude_range=(0, 0.3), direction='vertical'),
        dict(type='mmpretrain.Translate', magnitude_key='magnitude',
             magnitude_range=(0, 0.3), direction='horizontal'),
        dict(type='mmpretrain.Translate', magnitude_key='magnitude',
             magnitude_range=(0, 0.3), direction='vertical'),
        dict(type='mmpretrain.Rotate', magnitude_key='angle',
             magnitude_range=(0, 30)),
    ],
    num_policies=2,
    magnitude_level=7,
    total_level=10)
