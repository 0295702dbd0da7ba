"""`dilated_cnn` that also sees each mel band above its own noise floor in the chunk.

A call recorded near the microphone and the same call in a distant field recording differ mostly in the
level of what lies under them: gain, wind, insects, a steady chorus. Over 2 s, each band's lower
percentile (FLOOR_Q of the frames) is that background's level, while short calls sit above it. The
network gets, side by side, the normalised log-mel as it is and minus each band's floor (2 x n_mels
channels), so the level a call reaches above its own background is there without losing the absolute
spectrum (subtracting each band's *mean* alone halved bird top-1; docs/results.md).
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): about 0.56 M.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from birdclef.models.dilated_cnn import body
from birdclef.models.heads import outputs

SUMMARY = "dilated_cnn over the log-mel and the log-mel above each band's noise floor, 0.56 M parameters"
FLOOR_Q = 0.2


class AboveFloor(keras.layers.Layer):
    """[batch, frames, n_mels] -> [batch, frames, 2 n_mels]: x, and x minus each band's FLOOR_Q-quantile
    over the frames (a weightless layer, exported with the model)."""

    def __init__(self, q: float = FLOOR_Q, **kwargs):
        super().__init__(**kwargs)
        self.q = q

    def call(self, x):
        k = tf.cast(tf.cast(tf.shape(x)[1], tf.float32) * self.q, tf.int32)
        floor = tf.gather(tf.sort(x, axis=1), [k], axis=1)  # [batch, 1, n_mels]
        return tf.concat([x, x - floor], axis=-1)

    def get_config(self):
        return {**super().get_config(), "q": self.q}


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0):
    inp = keras.Input(shape=mel_shape, name="mel")
    pooled = body(AboveFloor(name="above_floor")(inp))
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="floor_dilated")
