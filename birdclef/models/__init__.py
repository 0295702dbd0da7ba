"""Architectures behind one registry: `birdclef train --model NAME` (`--model list` lists them).

Every builder takes the mel shape (frames, n_mels), the embedding size and the
number of classes, and returns a tf_keras Model mapping a normalised log-mel
[batch, frames, n_mels] to {"embedding": L2-normalised [batch, D],
"logits": [batch, n_classes]}. Models are built with tf_keras (Keras 2), the
Keras that TF Transform's layer supports.
"""
from __future__ import annotations

from birdclef.models import crnn, dilated_cnn, floor_attention, floor_dilated, mobilenet, resnet, stem_dilated

REGISTRY = {
    "dilated_cnn": dilated_cnn,
    "resnet": resnet,
    "mobilenet": mobilenet,
    "crnn": crnn,
    "floor_dilated": floor_dilated,
    "floor_attention": floor_attention,
    "stem_dilated": stem_dilated,
}


def build(name: str, mel_shape: tuple[int, int], embedding_dim: int, n_classes: int, dropout: float = 0.0):
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name].build(mel_shape, embedding_dim, n_classes, dropout=dropout)


def describe() -> list[str]:
    return [f"{name:12s} {mod.SUMMARY}" for name, mod in REGISTRY.items()]
