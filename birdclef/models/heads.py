"""Shared output heads: embedding (L2-normalised) and class logits."""
from __future__ import annotations

import tf_keras as keras


BN_MOMENTUM = 0.9  # Keras' 0.99 leaves moving statistics far from converged after a few hundred steps


def batch_norm(name: str):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def outputs(features, embedding_dim: int, n_classes: int) -> dict:
    """features: [batch, d] pooled backbone output."""
    emb = keras.layers.Dense(embedding_dim, name="embedding_dense")(features)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(emb)
    normed = keras.layers.Lambda(lambda x: keras.backend.l2_normalize(x, axis=-1), name="embedding",
                                 dtype="float32")(emb)
    return {"embedding": normed, "logits": logits}
