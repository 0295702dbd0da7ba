"""`floor_dilated` behind a small 2-D convolutional stem over time and frequency.

`dilated_cnn` reads every mel band as an input channel of its own: a call one band higher, or a recording
coloured by another microphone, is a different input to its first layer, and with one to six training
recordings per species the network learns each recording's spectrum more than its calls' shapes. The stem
first learns local time-frequency patterns (a chirp, a trill, a whistle's edge) shared by all bands: two 3x3
convolutions over (frames, bands), the log-mel and the log-mel above each band's floor as two input channels
(`floor_dilated.AboveFloor`), each followed by batch norm, ReLU and a max over 2 neighbouring bands. The
dilated stacks then read the resulting [frames, bands / 4 x STEM[-1]] map as before.
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): about 0.66 M; about 1.6x the multiply-adds
of `floor_dilated`.
"""
from __future__ import annotations

import tf_keras as keras

from birdclef.models.dilated_cnn import body
from birdclef.models.floor_dilated import AboveFloor
from birdclef.models.heads import batch_norm, outputs

SUMMARY = "a 2-D conv stem (2 x 3x3, bands pooled by 4), then floor_dilated's dilated stacks, 0.66 M parameters"
STEM = (16, 32)  # channels of the two 3x3 convolutions


def stem(x, n_mels: int, widths=STEM):
    """[batch, frames, 2 n_mels] (AboveFloor's output) -> [batch, frames, n_mels / 2^len(widths) x widths[-1]]."""
    frames = x.shape[1]
    x = keras.layers.Reshape((frames, 2, n_mels))(x)
    x = keras.layers.Permute((1, 3, 2))(x)  # [batch, frames, n_mels, 2]: the two views as channels
    for i, w in enumerate(widths):
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"stem{i}_conv")(x)
        x = keras.layers.Activation("relu")(batch_norm(f"stem{i}_bn")(x))
        x = keras.layers.MaxPooling2D((1, 2), name=f"stem{i}_pool")(x)
    return keras.layers.Reshape((frames, x.shape[2] * x.shape[3]))(x)


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0):
    inp = keras.Input(shape=mel_shape, name="mel")
    pooled = body(stem(AboveFloor(name="above_floor")(inp), mel_shape[1]))
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="stem_dilated")
