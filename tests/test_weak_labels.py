"""birdclef.weak_labels: bird chunks showing no call get a lower loss weight; calls, short clips and non-bird
chunks keep full weight."""
import numpy as np
import pytest

from birdclef import weak_labels
from birdclef.config import DEFAULT_FEATURES
from birdclef.features import chunk_samples, logmel


def _chunks():
    """Normalised log-mels (mean 0, std 1 per band, as TF Transform fits them) of: steady hiss; the
    same hiss with a 3 kHz whistle in its middle 0.3 s; a 0.4 s whistle zero-padded to a chunk."""
    rng = np.random.default_rng(0)
    n, sr = chunk_samples(DEFAULT_FEATURES), DEFAULT_FEATURES.sample_rate
    hiss = rng.normal(0, 0.01, n).astype(np.float32)
    t = np.arange(n) / sr
    call = hiss + np.where(np.abs(t - 1.0) < 0.15, 0.2 * np.sin(2 * np.pi * 3000 * t), 0).astype(np.float32)
    short = np.zeros(n, np.float32)
    short[: int(0.4 * sr)] = 0.2 * np.sin(2 * np.pi * 3000 * t[: int(0.4 * sr)])
    lm = logmel(np.stack([hiss, call, short]), DEFAULT_FEATURES).astype(np.float64)
    mean, std = lm.mean(axis=(0, 1)), lm.std(axis=(0, 1)) + 1e-3
    return ((lm - mean) / std).astype(np.float32), mean, std


def test_a_pause_weighs_floor_a_call_and_a_short_clip_full_and_non_bird_chunks_full():
    mel, mean, std = _chunks()
    c = weak_labels.contrast(mel, mean, std).numpy()
    assert c[0] <= weak_labels.LOW < weak_labels.HIGH <= min(c[1], c[2]), c
    w = weak_labels.call_weight(mel, np.array([0, 0, 0]), 5, mean, std, 0.2).numpy()
    np.testing.assert_allclose(w, [0.2, 1.0, 1.0], atol=1e-6)
    # the same hiss labelled non-bird (nocall id 5) or unknown (-1) is a true label: full weight
    w = weak_labels.call_weight(mel, np.array([5, -1, 5]), 5, mean, std, 0.2).numpy()
    np.testing.assert_allclose(w, [1.0, 1.0, 1.0])


def test_the_train_step_scales_each_chunks_class_loss_by_its_weight():
    import tf_keras as keras

    from birdclef import models, train
    from birdclef.features import mel_shape

    cfg = train.TrainConfig(data_path="x", ckpt_dir="y", loss="classify", jit_compile=False)
    model = models.build("dilated_cnn", mel_shape(), 16, 4)
    x = np.random.default_rng(1).normal(size=(4, *mel_shape())).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    m = np.eye(4, dtype=np.float32)
    losses = [float(train.make_train_step(model, keras.optimizers.SGD(0.0), cfg)(x, (y, m, w)))
              for w in (np.ones(4, np.float32), np.array([1, 1, 1, 0], np.float32), np.array([1, 1, 1, 1e-9], np.float32))]
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)  # the weight reaches the loss
    assert losses[1] == pytest.approx(losses[2], rel=1e-4)  # and a zero weight leaves the chunk out
