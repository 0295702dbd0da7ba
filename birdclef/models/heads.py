"""Shared output heads: embedding (L2-normalised), class logits and bird presence."""
from __future__ import annotations

import tf_keras as keras


BN_MOMENTUM = 0.9  # Keras' 0.99 leaves moving statistics far from converged after a few hundred steps


def batch_norm(name: str):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def outputs(features, embedding_dim: int, n_classes: int, dropout: float = 0.0) -> dict:
    """features: [batch, d] pooled backbone output; dropout: rate of a dropout on it while training (0: none).

    embedding  [batch, D]  L2-normalised
    logits     [batch, C]  one independent (sigmoid) logit per class: multi-label, so a chunk may
                           hold several species, and scores of different classes do not compete
    bird       [batch]     logit of "some bird calls in this chunk", of its own: trained with every
                           bird class as positive and non-bird audio / `nocall` windows as negative,
                           so it also fires for birds the model has no class for"""
    if dropout:  # no weights: checkpoints with and without it load into each other
        features = keras.layers.Dropout(dropout, name="pooled_dropout")(features)
    emb = keras.layers.Dense(embedding_dim, name="embedding_dense")(features)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(emb)
    bird = keras.layers.Dense(1, name="bird_dense", dtype="float32")(features)
    bird = keras.layers.Reshape((), name="bird", dtype="float32")(bird)
    normed = keras.layers.Lambda(lambda x: keras.backend.l2_normalize(x, axis=-1), name="embedding",
                                 dtype="float32")(emb)
    return {"embedding": normed, "logits": logits, "bird": bird}
