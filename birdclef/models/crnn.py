"""CRNN: 2-D conv blocks pooling over frequency, then a bidirectional GRU over time.

Four conv blocks (32, 64, 128, 128 filters; 2x2 pooling for the first two,
1x2 after, so time keeps 50 steps), frequency folded into channels, a
bidirectional GRU of 128 units, average and max pooling over time.
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): 1,195,312.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.heads import batch_norm, outputs

SUMMARY = "CRNN: 4 conv blocks + bidirectional GRU over time, 1.2 M parameters"


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0, widths=(32, 64, 128, 128), gru_units: int = 128):
    inp = keras.Input(shape=mel_shape, name="mel")
    x = keras.layers.Reshape((*mel_shape, 1))(inp)
    for i, w in enumerate(widths):
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.Activation("relu")(batch_norm(f"bn{i}")(x))
        x = keras.layers.MaxPooling2D((2, 2) if i < 2 else (1, 2))(x)
    t, f, c = x.shape[1], x.shape[2], x.shape[3]
    x = keras.layers.Reshape((t, f * c))(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(gru_units, return_sequences=True), name="bigru")(x)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(x),
                                         keras.layers.GlobalMaxPooling1D()(x)])
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="crnn")
