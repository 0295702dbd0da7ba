"""Training-time augmentation of normalised log-mel batches, so training sees what serving sees.

Field audio puts short calls at any offset, over wind, insects, voices and other birds, at any
loudness. Each augmentation below is switchable (`birdclef train --augment LIST`, recorded in the
run's config; DEFAULT names the ones on by default) and runs on whole batches inside the tf.data pipeline
(vectorised TF ops, no extra read of the data):

  shift        every chunk is rolled in time by a random number of frames, so a clip shorter
               than a chunk (stored zero-padded at the chunk's start) sits at a random offset,
               and a call's position tells the model nothing
  gain         random gain of +-GAIN_DB dB (on the power spectrum, not on the silence floor)
  mixup        with probability MIXUP_P a bird chunk gets another bird chunk of the batch added,
               1-10 dB weaker (so its own label stays the primary one); the labels are united
  background   with probability BACKGROUND_P a chunk gets a non-bird chunk of the batch (non-bird
               clips and `nocall` soundscape windows; the class-balanced sampler keeps about
               NOCALL_SHARE of every batch non-bird) added at a random SNR of SNR_DB dB
  pitch        every chunk is moved along the mel axis by up to PITCH_BANDS bands (about +-PITCH_BANDS x 4 %
               of pitch over 1-10 kHz), edge bands repeated: individuals, dialects and recordists' gear
               differ by a few percent of pitch, which the network should not read as another species
  specaugment  two time masks (up to TIME_MASK frames each) and two frequency masks (up to
               FREQ_MASK bands each), set to the band mean (0 after normalisation)
  filter       every chunk's spectrum is tilted by a random smooth curve over the mel bands (FilterAugment,
               Nam et al. 2022): gains of +-FILTER_DB dB at FILTER_NODES evenly spaced bands, linear
               between them, on the power spectrum. Microphones, distance (air takes the highs first)
               and recordists' filters colour each recording; the network should not read a recording's
               colour as its species
  quiet        with probability QUIET_P a non-bird chunk is made quiet, still labelled no bird: half
               of them become hiss alone (white, pink or brown noise at QUIET_DB dB re full scale RMS,
               a QUIET_SILENT share digital silence), the other half keep their sound QUIET_ATTEN_DB dB
               weaker over such hiss (a far-off dog or engine). Without it, models trained on
               birdclef-plus heard a bird in faint hiss (presence 0.97-0.98 at -60 dBFS) and in
               held-out non-bird clips made 40 dB quieter (27-59 % at the validation-chosen gate,
               against 0-14 % at their own level; 27-36 % with it): birds are recorded at a distance, non-bird clips
               close up, so loudness alone told them apart

Mixing happens where sounds add: on mel power. A normalised log-mel x of band m is turned back
into power with the per-band mean and std that TF Transform fitted on the train split,
P = exp(x * std + mean) - 1e-6 (the log-mel's floor), mixed, and taken back the same way.
"""
from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("shift", "gain", "mixup", "background", "pitch", "specaugment", "quiet", "filter")
# On by default: shift and quiet. On birdclef-plus + nonbird (bench/quality.py, 20 epochs, 3 seeds, one
# session) `shift` raised bird top-1 from 0.556 to 0.695 and made a short call's bird presence steady
# wherever it sits in the window; `quiet` stops faint hiss and far-off non-bird sounds being heard as
# birds (docs/results.md). The others lowered every measure there (bird top-1 0.487 with all of them
# against 0.695 without, non-bird clips called bird 18 % against 0 %); `--augment all` or a list turns
# them on, `--augment none` turns all off.
DEFAULT = "shift,quiet"

GAIN_DB = 6.0
MIXUP_P = 0.3
MIXUP_DB = (1.0, 10.0)  # how much weaker the added bird chunk is
BACKGROUND_P = 0.6
SNR_DB = (-3.0, 20.0)
TIME_MASKS, TIME_MASK = 2, 20  # frames of 10 ms
FREQ_MASKS, FREQ_MASK = 2, 12  # mel bands
PITCH_BANDS = 3
FILTER_DB, FILTER_NODES = 6.0, 5
FLOOR = 1e-6  # birdclef.features: log(mel power + 1e-6)
QUIET_P = 0.3  # share of non-bird chunks replaced by quiet hiss
QUIET_DB = (-100.0, -40.0)  # its RMS, dB re full scale
QUIET_SILENT = 0.15  # share of those that are digital silence
QUIET_ATTEN_DB = (10.0, 50.0)  # how much weaker a quiet non-bird chunk keeps its own sound
QUIET_BANK = 16  # noise chunks per colour, computed once per run
NOISE_COLOURS = ("white", "pink", "brown")


def parse(spec: str) -> tuple[str, ...]:
    """`--augment` value -> augmentation names: a comma list of AUGMENTATIONS, `all` or `none`.

    Raises ValueError naming the unknown ones."""
    spec = (spec or "").strip().lower()
    if spec in ("", "none"):
        return ()
    if spec == "all":
        return AUGMENTATIONS
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"--augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}, "
                         f"all or none")
    return tuple(n for n in AUGMENTATIONS if n in names)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """n samples of unit-RMS noise whose power falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    slope = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** slope, n)
    x -= x.mean()
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def quiet_bank(cfg=None, seed: int = 0) -> np.ndarray:
    """Mel power [QUIET_BANK x colours, frames, n_mels] of unit-RMS noise chunks, by the reference feature
    function (`birdclef.features.logmel`): the `quiet` augmentation scales it to its level (mel power
    scales with the square of the amplitude) and takes the log with the same floor."""
    from birdclef import features
    from birdclef.config import DEFAULT_FEATURES

    cfg = cfg or DEFAULT_FEATURES
    rng = np.random.default_rng(seed)
    n = features.chunk_samples(cfg)
    waves = np.stack([coloured_noise(n, c, rng) for c in NOISE_COLOURS for _ in range(QUIET_BANK)])
    return np.maximum(np.exp(features.logmel(waves, cfg).astype(np.float64)) - FLOOR, 0.0).astype(np.float32)


def _pick(mask, tf):
    """For each row, the index of a random row where `mask` holds (any row if none does) and
    whether one existed: [b] int32, [] bool."""
    b = tf.shape(mask)[0]
    noise = tf.random.uniform([b, b])
    scores = tf.where(mask[None, :], noise, -1.0)
    return tf.cast(tf.argmax(scores, axis=1), tf.int32), tf.reduce_any(mask)


def filter_curve(b, bands, tf):
    """[b, bands] gains in dB: FILTER_NODES random gains in +-FILTER_DB at evenly spaced bands, linear
    between them (the `filter` augmentation)."""
    nodes = tf.random.uniform([b, FILTER_NODES], -FILTER_DB, FILTER_DB)
    pos = tf.linspace(0.0, float(FILTER_NODES - 1), bands)  # each band's place between the nodes
    lo = tf.minimum(tf.cast(tf.floor(pos), tf.int32), FILTER_NODES - 2)
    frac = (pos - tf.cast(lo, tf.float32))[None, :]
    return tf.gather(nodes, lo, axis=1) * (1.0 - frac) + tf.gather(nodes, lo + 1, axis=1) * frac


def augment_batch(mel, y, multi, names: tuple[str, ...], mean, std, nocall: int, bank=None):
    """TF ops on one batch: mel [b, frames, n_mels] normalised, y [b] primary class, multi [b, C]
    multi-hot targets -> the same, augmented by `names` (see the module doc). `quiet` needs `bank`
    (`quiet_bank`, with the batch's frames and bands)."""
    import tensorflow as tf

    if not names:
        return mel, y, multi
    b, frames, bands = tf.shape(mel)[0], tf.shape(mel)[1], tf.shape(mel)[2]
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    power_names = {"shift", "gain", "mixup", "background", "quiet", "filter"} & set(names)
    if power_names:
        p = tf.maximum(tf.exp(mel * std + mean) - FLOOR, 0.0)
        if "quiet" in names:
            if bank is None:
                raise ValueError("the quiet augmentation needs a noise bank (augment.quiet_bank)")
            bank = tf.constant(bank, tf.float32)
            use = tf.equal(y, nocall) & (tf.random.uniform([b]) < QUIET_P)
            pick = tf.random.uniform([b], 0, tf.shape(bank)[0], tf.int32)
            level = 10.0 ** (tf.random.uniform([b], *QUIET_DB) / 10.0)  # power: RMS dB / 10
            level = tf.where(tf.random.uniform([b]) < QUIET_SILENT, 0.0, level)
            keep = tf.where(tf.random.uniform([b]) < 0.5, 10.0 ** (-tf.random.uniform([b], *QUIET_ATTEN_DB) / 10.0), 0.0)
            quiet = keep[:, None, None] * p + level[:, None, None] * tf.gather(bank, pick)
            p = tf.where(use[:, None, None], quiet, p)
        if "shift" in names:
            t = tf.random.uniform([b], 0, frames, tf.int32)
            idx = (tf.range(frames)[None, :] + t[:, None]) % frames
            p = tf.gather(p, idx, batch_dims=1)
        if "gain" in names:
            p *= 10.0 ** (tf.random.uniform([b, 1, 1], -GAIN_DB, GAIN_DB) / 10.0)
        if "filter" in names:
            p *= 10.0 ** (filter_curve(b, bands, tf)[:, None, :] / 10.0)
        energy = tf.reduce_mean(p, axis=[1, 2]) + 1e-12
        is_bird = tf.logical_and(y >= 0, y != nocall)
        if "mixup" in names:
            partner, any_bird = _pick(is_bird, tf)
            use = is_bird & (tf.random.uniform([b]) < MIXUP_P) & any_bird & (partner != tf.range(b))
            weaker = 10.0 ** (-tf.random.uniform([b], *MIXUP_DB) / 10.0)
            scale = tf.where(use, weaker * energy / tf.gather(energy, partner), 0.0)
            p_partner = tf.gather(p, partner)
            p = p + scale[:, None, None] * p_partner
            multi = tf.where(use[:, None], tf.maximum(multi, tf.gather(multi, partner)), multi)
            energy = tf.reduce_mean(p, axis=[1, 2]) + 1e-12
        if "background" in names:
            is_noise = tf.equal(y, nocall)
            bg, any_noise = _pick(is_noise, tf)
            use = (tf.random.uniform([b]) < BACKGROUND_P) & any_noise & (bg != tf.range(b))
            snr = tf.random.uniform([b], *SNR_DB)
            scale = tf.where(use, energy / tf.gather(energy, bg) * 10.0 ** (-snr / 10.0), 0.0)
            p = p + scale[:, None, None] * tf.gather(p, bg)
        mel = (tf.math.log(p + FLOOR) - mean) / std
    if "pitch" in names:  # on the log-mel itself, so each band keeps its own normalisation
        k = tf.random.uniform([b, 1], -PITCH_BANDS, PITCH_BANDS + 1, tf.int32)
        src = tf.clip_by_value(tf.range(bands)[None, :] - k, 0, bands - 1)  # [b, bands]
        log = tf.gather(mel * std + mean, src, axis=2, batch_dims=1)
        mel = (log - mean) / std
    if "specaugment" in names:
        def masks(n_masks, width, length, axis_len):
            pos = tf.range(axis_len)[None, :]
            keep = tf.ones([b, axis_len], tf.bool)
            for _ in range(n_masks):
                w = tf.random.uniform([b, 1], 0, width + 1, tf.int32)
                room = tf.cast(tf.maximum(length - w + 1, 1), tf.float32)
                s = tf.cast(tf.floor(tf.random.uniform([b, 1]) * room), tf.int32)
                keep &= ~((pos >= s) & (pos < s + w))
            return keep

        keep_t = masks(TIME_MASKS, TIME_MASK, frames, frames)
        keep_f = masks(FREQ_MASKS, FREQ_MASK, bands, bands)
        keep = tf.logical_and(keep_t[:, :, None], keep_f[:, None, :])
        mel = tf.where(keep, mel, 0.0)
    return mel, y, multi


def place_short(mel, mean, std, tol: float = 0.05):
    """TF ops on one batch of normalised log-mels [b, frames, n_mels]: a chunk that ends in padding (a
    clip shorter than a chunk, stored zero-padded at the chunk's end) is rolled right by a random
    number of frames up to its padding's length, so the clip sits anywhere in the chunk, as a short
    call does in a served window. Chunks without padding are left as they are. Not an augmentation
    (always on for class-balanced training): it is the training half of the train/serve consistency
    of short audio.

    Padding frames are those at the log-mel's floor, log(1e-6), in every band (within `tol` after
    the normalisation)."""
    import numpy as np
    import tensorflow as tf

    floor = tf.constant((np.log(FLOOR) - np.asarray(mean, np.float64)) / np.asarray(std, np.float64), tf.float32)
    frames = tf.shape(mel)[1]
    is_pad = tf.reduce_all(tf.abs(mel - floor) < tol, axis=2)  # [b, frames]
    trailing = tf.reduce_sum(tf.math.cumprod(tf.cast(tf.reverse(is_pad, [1]), tf.int32), axis=1), axis=1)
    trailing = tf.where(trailing >= frames, 0, trailing)  # all padding: nothing to place
    shift = tf.cast(tf.floor(tf.random.uniform(tf.shape(trailing)) * tf.cast(trailing + 1, tf.float32)), tf.int32)
    idx = (tf.range(frames)[None, :] - shift[:, None]) % frames
    return tf.gather(mel, idx, batch_dims=1)
