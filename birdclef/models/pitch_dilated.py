"""A small 2-D convolution stem over time x mel, then the stacked dilated 1-D CNN of `dilated_cnn`.

`dilated_cnn` reads the 128 mel bands as 128 independent channels, so a call a few percent higher or
lower in pitch (another individual, dialect or microphone) meets different weights. Here three 3x3
convolution blocks (16, 32, 32 filters, each followed by 1x2 max pooling over mel only, so time keeps
every frame) first look at local time-frequency shapes that are the same wherever in pitch they sit;
the 16 remaining mel groups x 32 filters are then the dilated stacks' input.
Parameters at the defaults (200 x 128 mel, D=128, 32 classes): about 0.61 M.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.dilated_cnn import body
from birdclef.models.heads import batch_norm, outputs

SUMMARY = "2-D conv stem (pitch-tolerant) + stacked dilated 1-D CNN, 0.61 M parameters"


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0, widths=(16, 32, 32)):
    inp = keras.Input(shape=mel_shape, name="mel")
    x = keras.layers.Reshape((*mel_shape, 1))(inp)
    for i, w in enumerate(widths):
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"stem{i}_conv")(x)
        x = keras.layers.Activation("relu")(batch_norm(f"stem{i}_bn")(x))
        x = keras.layers.MaxPooling2D((1, 2), name=f"stem{i}_pool")(x)
    t, f, c = x.shape[1], x.shape[2], x.shape[3]
    x = keras.layers.Reshape((t, f * c))(x)
    return keras.Model(inp, outputs(body(x), embedding_dim, n_classes, dropout), name="pitch_dilated")
