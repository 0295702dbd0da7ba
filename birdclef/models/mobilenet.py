"""MobileNetV2 from `tf_keras.applications` (width 0.5, random init), adapted to one-channel mel input.

The log-mel [frames, n_mels] becomes a one-channel image; no ImageNet weights
(they expect three-channel photographs and cannot be downloaded here anyway).
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): 871,968.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.heads import BN_MOMENTUM, outputs

SUMMARY = "MobileNetV2 (alpha 0.5) from tf_keras.applications, one-channel input, 0.87 M parameters"


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0, alpha: float = 0.5, bn_momentum: float = BN_MOMENTUM):
    inp = keras.Input(shape=mel_shape, name="mel")
    x = keras.layers.Reshape((*mel_shape, 1))(inp)
    backbone = keras.applications.MobileNetV2(input_shape=(*mel_shape, 1), alpha=alpha, include_top=False,
                                              weights=None, pooling="avg")
    # The application's BatchNormalization momentum (0.999) suits fine-tuning; trained from scratch on a
    # few hundred steps its moving statistics stay near their initial values and inference collapses.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    pooled = backbone(x)
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="mobilenet")
