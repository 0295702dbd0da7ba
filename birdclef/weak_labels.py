"""Weak labels: a recording's species label on chunks where the bird may not call.

Every 2 s chunk of a training recording carries the recording's species, but songs have pauses: on
birdclef-plus's train split a tenth of the bird chunks are at or below LOW and a fifth below HIGH (the
contrast below), as steady background is (`veery`'s one training recording: 93 chunks, median 1.6).
Trained on them at full weight, the class head learns the recording's background as the species (the
held-out `veery` recording, with insects above 8 kHz, was named `hen`, a class of noisy farmyard clips),
and bird presence learns that a quiet field recording is a bird.

`call_weight` gives each bird-labelled chunk a loss weight from the evidence of a call in it: the
*contrast* of its log-mel, the mean over its CONTRAST_BANDS most contrasted mel bands of (95th - 50th
percentile over time) of the band's log power, in natural-log units (1 = 4.3 dB). A call standing out
of its background scores 3-15; a pause or steady background 1.4-2. Chunks at or below LOW get the
weight `floor`, chunks at or above HIGH get 1, linearly between. Non-bird chunks (their label is true
everywhere) keep weight 1. `birdclef train --call-weight FLOOR` turns it on (1: off).
"""
from __future__ import annotations

CONTRAST_BANDS = 8
LOW, HIGH = 1.75, 3.0  # contrast (ln power) of "no call seen" and "a call"


def contrast(mel, mean, std):
    """TF ops: normalised log-mels [b, frames, n_mels] -> [b] contrast (see the module doc). Frames of
    padding (a clip shorter than a chunk) sit at the log-mel's floor, far below the median, so a short
    clip's contrast is high: a short clip is a call cut out by its recordist."""
    import tensorflow as tf

    lp = tf.cast(mel, tf.float32) * tf.constant(std, tf.float32) + tf.constant(mean, tf.float32)
    s = tf.sort(lp, axis=1)  # over time, per band
    frames = tf.shape(s)[1]
    at = lambda q: tf.gather(s, tf.cast(tf.round(q * tf.cast(frames - 1, tf.float32)), tf.int32), axis=1)
    c = at(0.95) - at(0.5)  # [b, n_mels]
    return tf.reduce_mean(tf.math.top_k(c, k=CONTRAST_BANDS).values, axis=1)


def call_weight(mel, y, nocall: int, mean, std, floor: float):
    """TF ops on one batch: loss weights [b] in [floor, 1] for bird-labelled chunks by their contrast,
    1 for non-bird chunks (y == nocall) and chunks of unknown label (y < 0)."""
    import tensorflow as tf

    ramp = tf.clip_by_value((contrast(mel, mean, std) - LOW) / (HIGH - LOW), 0.0, 1.0)
    w = floor + (1.0 - floor) * ramp
    bird = tf.logical_and(y >= 0, y != nocall)
    return tf.where(bird, w, tf.ones_like(w))

