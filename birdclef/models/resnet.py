"""ResNet-style 2-D CNN on the log-mel image (one channel).

Stem conv 32 (stride 2), then four stages of two basic residual blocks with 32,
64, 128, 256 filters (stride 2 from the second stage), global average pooling.
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): 2,834,224.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.heads import batch_norm, outputs

SUMMARY = "ResNet-style 2-D CNN, 4 stages x 2 basic blocks, 2.8 M parameters"


def _block(x, filters: int, stride: int, name: str):
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_c1")(x)
    y = batch_norm(f"{name}_bn1")(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_c2")(y)
    y = batch_norm(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_skip")(x)
        x = batch_norm(f"{name}_skip_bn")(x)
    return keras.layers.Activation("relu")(keras.layers.Add()([x, y]))


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0, widths=(32, 64, 128, 256)):
    inp = keras.Input(shape=mel_shape, name="mel")
    x = keras.layers.Reshape((*mel_shape, 1))(inp)
    x = keras.layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.Activation("relu")(batch_norm("stem_bn")(x))
    for i, w in enumerate(widths):
        x = _block(x, w, 1 if i == 0 else 2, f"stage{i}_a")
        x = _block(x, w, 1, f"stage{i}_b")
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="resnet")
