"""Training-time augmentation, class balance with a non-bird share, and the non-bird split rule."""
import numpy as np
import pandas as pd
import pytest

from birdclef import augment, train
from birdclef.data import split

FRAMES, BANDS = 200, 128
MEAN, STD = np.full(BANDS, -8.0, np.float32), np.full(BANDS, 3.0, np.float32)


def _norm(log_power):
    return ((log_power - MEAN) / STD).astype(np.float32)


def _silence():
    return np.full((FRAMES, BANDS), np.log(1e-6), np.float32)


def test_parse_names_all_none_and_refuses_unknown():
    assert augment.parse("all") == augment.AUGMENTATIONS and augment.parse(augment.DEFAULT) == ("shift", "quiet")
    assert augment.parse("none") == () == augment.parse("")
    assert augment.parse("gain, shift") == ("shift", "gain")
    with pytest.raises(ValueError, match="wind"):
        augment.parse("shift,wind")


def test_short_clips_are_placed_anywhere_in_their_chunk_and_full_chunks_left_alone():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    clip = _silence()
    clip[:30] = np.log(1e-2) + rng.normal(0, 0.5, (30, BANDS))  # a 0.3 s call, then padding (as stage 1 stores it)
    full = np.log(1e-3) + rng.normal(0, 1.0, (FRAMES, BANDS)).astype(np.float32)  # a chunk of a long recording
    x = tf.constant(np.stack([_norm(clip)] * 63 + [_norm(full)]))
    out = augment.place_short(x, MEAN, STD).numpy()
    np.testing.assert_array_equal(out[63], x.numpy()[63])  # no padding: untouched
    starts = []
    for r in out[:63]:
        loud = np.flatnonzero(r.mean(1) > -1)
        assert len(loud) == 30 and loud[-1] - loud[0] == 29  # the whole call, in one piece, never wrapped
        np.testing.assert_array_equal(r[loud[0]:loud[0] + 30], x.numpy()[0][:30])
        starts.append(int(loud[0]))
    assert len(set(starts)) > 20 and max(starts) <= FRAMES - 30  # many places, all inside the chunk


def test_shift_puts_a_short_clip_at_random_offsets_and_keeps_its_energy():
    import tensorflow as tf

    clip = _silence()
    clip[:30] = np.log(1e-2)  # a 0.3 s call at the chunk's start, then padding (as stage 1 stores it)
    x = tf.constant(np.stack([_norm(clip)] * 64))
    y = tf.zeros([64], tf.int64)
    out, _, _ = augment.augment_batch(x, y, tf.one_hot(y, 3), ("shift",), MEAN, STD, nocall=2)
    loud = out.numpy().mean(2) > 0
    starts = [int(np.argmax(r)) if not r[0] else 0 for r in loud]
    assert len(set(starts)) > 20  # many different offsets
    np.testing.assert_allclose(loud.sum(1), 30)  # the call is moved, not cut or stretched


def test_mixup_unites_bird_labels_and_background_keeps_them():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    mels = np.stack([_norm(np.log(rng.uniform(1e-4, 1e-2, (FRAMES, BANDS)))) for _ in range(32)])
    y = np.array([0] * 12 + [1] * 12 + [2] * 8, np.int64)  # class 2 = nocall
    multi = tf.one_hot(y, 3)
    tf.random.set_seed(1)
    _, y2, m2 = augment.augment_batch(tf.constant(mels), tf.constant(y), multi, ("mixup",), MEAN, STD, nocall=2)
    m2 = m2.numpy()
    assert (y2.numpy() == y).all()  # the primary label stays
    united = m2[:24].sum(1) == 2
    assert united.any() and (m2[:24][united][:, 2] == 0).all()  # bird + bird, never nocall
    assert (m2[24:] == multi.numpy()[24:]).all()  # non-bird chunks are not mixed up
    out, y3, m3 = augment.augment_batch(tf.constant(mels), tf.constant(y), multi, ("background",), MEAN, STD,
                                        nocall=2)
    assert (m3.numpy() == multi.numpy()).all() and (y3.numpy() == y).all()
    power = lambda a: np.exp(a * STD + MEAN).mean((1, 2))  # noqa: E731
    assert (power(out.numpy()) >= power(mels) * 0.999).all() and (power(out.numpy()) > power(mels) * 1.01).any()


def test_no_augmentation_is_the_identity_and_specaugment_masks_to_the_mean():
    import tensorflow as tf

    x = tf.constant(np.ones((4, FRAMES, BANDS), np.float32))
    y = tf.zeros([4], tf.int64)
    same, _, _ = augment.augment_batch(x, y, tf.one_hot(y, 2), (), MEAN, STD, nocall=1)
    assert same is x
    masked, _, _ = augment.augment_batch(x, y, tf.one_hot(y, 2), ("specaugment",), MEAN, STD, nocall=1)
    vals = np.unique(masked.numpy())
    assert set(vals) <= {0.0, 1.0} and (masked.numpy() == 0).mean() < 0.5


def test_balanced_keep_gives_non_bird_chunks_their_share():
    counts = np.array([100, 10, 40, 500])  # three birds, nocall last
    keep = train.balanced_keep(counts, nocall=3, nocall_share=0.25)
    expected = counts * keep
    np.testing.assert_allclose(expected[:3], expected[0])  # birds equal
    assert expected[3] / expected.sum() == pytest.approx(0.25)
    np.testing.assert_allclose(train.balanced_keep(counts), counts.min() / counts)  # no share: all equal
    assert keep.max() == pytest.approx(1.0)


def test_nonbird_split_trains_most_and_holds_out_every_source_in_val_and_test():
    rows = [{"recording_id": f"nb/{c}/{i}", "category": c, "source_type": "esc50"}
            for c in [f"cat{k}" for k in range(46)] for i in range(3)]
    rows += [{"recording_id": f"nb/bg/{i}", "category": "background", "source_type": "field"} for i in range(7)]
    df = pd.DataFrame(rows)
    s = split.split_nonbird(df, 0.3, seed=0)
    counts = s.value_counts()
    assert counts["train"] / len(df) >= 0.65  # per category (1 of 3) it was 0.35
    for st in ("esc50", "field"):
        assert {"train", "val", "test"} <= set(s[df.source_type == st])
    held = df[s != "train"]
    assert held["category"].nunique() == len(held[held.source_type == "esc50"]) + 1  # one clip per category
    assert split.split_nonbird(df, 0.3, seed=0).equals(s)  # deterministic


def test_pitch_moves_a_call_along_the_mel_axis_by_at_most_its_limit_with_each_band_normalised():
    import tensorflow as tf

    mean = np.linspace(-10.0, -6.0, BANDS).astype(np.float32)  # bands with different statistics
    std = np.linspace(2.0, 4.0, BANDS).astype(np.float32)
    log = np.full((64, FRAMES, BANDS), -9.0, np.float32)
    log[:, :, 60] = -1.0  # a tone in band 60
    x = tf.constant((log - mean) / std)
    y = tf.zeros([64], tf.int64)
    out, _, _ = augment.augment_batch(x, y, tf.one_hot(y, 2), ("pitch",), mean, std, nocall=1)
    back = out.numpy() * std + mean  # the log-mel the network sees, un-normalised
    where = back[:, 0, :].argmax(1)
    assert set(where - 60) <= set(range(-augment.PITCH_BANDS, augment.PITCH_BANDS + 1))
    assert len(set(where)) > 3  # it does move
    np.testing.assert_allclose(back.max(axis=2), -1.0, atol=1e-4)  # the tone's level kept
    np.testing.assert_allclose(np.sort(back, axis=2)[:, :, 0], -9.0, atol=1e-4)  # and the floor's


def test_quiet_makes_some_non_bird_chunks_quiet_and_leaves_birds_alone():
    """`quiet`: non-bird chunks (and only they) become hiss, silence, or their own sound 10-50 dB weaker
    over hiss, so loudness stops telling birds from other sounds; the hiss bank has the colours it names."""
    import tensorflow as tf

    bank = augment.quiet_bank()
    n = augment.QUIET_BANK
    assert bank.shape[0] == 3 * n and bank.shape[2] == BANDS and np.isfinite(bank).all() and (bank >= 0).all()
    # unit-RMS noise: white is flat per Hz, so the high mel bands (wider) hold more power than the low
    # ones; brown falls 6 dB per octave, so its low bands hold more
    tilt = [np.log(bank[i * n:(i + 1) * n, :, :16].mean() / bank[i * n:(i + 1) * n, :, -16:].mean()) for i in range(3)]
    assert tilt[0] < tilt[1] < tilt[2] and tilt[0] < 0 < tilt[2], tilt
    frames = bank.shape[1]
    # a loud chunk: mel power 1e4 in every band (unit-RMS white noise gives about 1300 on average)
    loud = np.full((frames, BANDS), np.log(1e4), np.float32)
    x = tf.constant(np.stack([_norm(loud)] * 256))
    y = tf.constant([0] * 128 + [2] * 128, tf.int64)  # 128 bird chunks, then 128 non-bird ones (nocall=2)
    out, y2, _ = augment.augment_batch(x, y, tf.one_hot(y, 3), ("quiet",), MEAN, STD, nocall=2, bank=bank)
    out = out.numpy()
    np.testing.assert_allclose(out[:128], x.numpy()[:128], atol=1e-5)  # birds untouched
    np.testing.assert_array_equal(y2.numpy(), y.numpy())  # labels kept: still no bird
    power = np.exp(out[128:] * STD + MEAN).mean(axis=(1, 2))
    changed = power < 0.5e4
    # about QUIET_P of them, each about 10 dB weaker or more (the loudest a quiet chunk can be is its own
    # sound 10 dB down plus -40 dBFS hiss), some digital silence (the log floor alone)
    assert 0.15 < changed.mean() < 0.45, changed.mean()
    assert (power[changed] < 0.11e4).all() and (np.abs(power - 1e-6) < 1e-7).any(), np.sort(power[changed])
    with pytest.raises(ValueError, match="noise bank"):
        augment.augment_batch(x, y, tf.one_hot(y, 3), ("quiet",), MEAN, STD, nocall=2)


def test_filter_tilts_each_chunk_by_a_smooth_curve_within_its_limit_and_keeps_the_time_course():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    log = rng.uniform(-4.0, 2.0, (32, FRAMES, BANDS)).astype(np.float32)  # well above the floor
    x = tf.constant((log - MEAN) / STD)
    y = tf.zeros([32], tf.int64)
    out, _, _ = augment.augment_batch(x, y, tf.one_hot(y, 2), ("filter",), MEAN, STD, nocall=1)
    db = (out.numpy() * STD + MEAN - log) * 10.0 / np.log(10.0)  # the gain each bin got, in dB
    np.testing.assert_allclose(db, db[:, :1, :].repeat(FRAMES, 1), atol=0.05)  # one curve per chunk, all frames
    curve = db[:, 0, :]
    assert np.abs(curve).max() <= augment.FILTER_DB + 0.05
    assert curve.std(axis=1).mean() > 1.0  # it does colour the spectrum
    assert len({round(float(c), 2) for c in curve[:, 0]}) > 16  # a curve of its own per chunk
    steps = np.abs(np.diff(curve, axis=1)).max()  # smooth: no band jumps more than a node-to-node ramp allows
    assert steps <= 2 * augment.FILTER_DB / ((BANDS - 1) / (augment.FILTER_NODES - 1)) + 0.1
