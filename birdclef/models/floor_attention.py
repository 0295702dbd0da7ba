"""`floor_dilated` whose pooling over time also takes an attention-weighted mean of the frames.

A call fills a few frames of a 2 s chunk. The average over time dilutes it with background and the
maximum keeps one frame; the SED heads of BirdCLEF solutions weight the frames by a learned
relevance instead. Here one 1x1 convolution scores every frame, a softmax over time turns the scores
into weights, and the weighted mean of the frames joins the average and the maximum before the heads.
Parameters at the defaults (200 x 128 mel, D=128, 16 classes): about 0.58 M.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from birdclef.models.dilated_cnn import stacks
from birdclef.models.floor_dilated import AboveFloor
from birdclef.models.heads import outputs

SUMMARY = "floor_dilated with an attention-weighted mean over time beside average and max pooling, 0.58 M parameters"


class AttentionPool(keras.layers.Layer):
    """[batch, frames, d] -> [batch, d]: the frames' mean weighted by softmax over time of a learned score."""

    def build(self, input_shape):
        self.score = keras.layers.Conv1D(1, 1, name="score")
        self.score.build(input_shape)
        super().build(input_shape)

    def call(self, x):
        w = tf.nn.softmax(tf.cast(self.score(x), tf.float32), axis=1)
        return tf.reduce_sum(w * tf.cast(x, tf.float32), axis=1)


def build(mel_shape, embedding_dim: int, n_classes: int, dropout: float = 0.0):
    inp = keras.Input(shape=mel_shape, name="mel")
    x = stacks(AboveFloor(name="above_floor")(inp))
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(x), keras.layers.GlobalMaxPooling1D()(x),
                                         AttentionPool(name="attention_pool")(x)])
    return keras.Model(inp, outputs(pooled, embedding_dim, n_classes, dropout), name="floor_attention")
