"""Stacked dilated 1-D CNN (the original design): mel bands as channels, time as the axis.

A 1x1 projection to 128 channels, then two stacks of residual blocks with
dilations 1, 2, 4, 8, 16 (kernel 3), so the receptive field covers the whole
2 s chunk (2 x 62 frames + 1 each side); global average and max pooling over
time; embedding and class heads.
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): 548,112.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.heads import batch_norm, outputs

SUMMARY = "stacked dilated 1-D CNN over time (original design), 0.55 M parameters"


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0, channels: int = 128, n_stacks: int = 2,
          dilations=(1, 2, 4, 8, 16)):
    inp = keras.Input(shape=mel_shape, name="mel")
    pooled = body(inp, channels, n_stacks, dilations)
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="dilated_cnn")


def body(x, channels: int = 128, n_stacks: int = 2, dilations=(1, 2, 4, 8, 16)):
    """[batch, frames, features] -> [batch, 2 * channels]: `stacks`, then average + max pooling over time."""
    x = stacks(x, channels, n_stacks, dilations)
    return keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(x),
                                       keras.layers.GlobalMaxPooling1D()(x)])


def stacks(x, channels: int = 128, n_stacks: int = 2, dilations=(1, 2, 4, 8, 16)):
    """[batch, frames, features] -> [batch, frames, channels]: the 1x1 projection and the residual
    dilated stacks."""
    x = keras.layers.Conv1D(channels, 1, name="project")(x)
    for s in range(n_stacks):
        for d in dilations:
            y = keras.layers.Conv1D(channels, 3, padding="same", dilation_rate=d, use_bias=False,
                                    name=f"s{s}_d{d}_conv")(x)
            y = batch_norm(f"s{s}_d{d}_bn")(y)
            y = keras.layers.Activation("relu")(y)
            x = keras.layers.Add(name=f"s{s}_d{d}_res")([x, y])
    return x
