"""A trained model as ONNX, and serving it with ONNX Runtime (no TensorFlow in the process).

    birdclef export --ckpt-dir C --format onnx      -> C/model.onnx
    birdclef predict FILES --ckpt-dir C/model.onnx --out D

The ONNX graph takes the power spectrogram of 2 s chunks, `power: float32 [n, frames, n_fft/2 + 1]`,
and returns `embedding [n, D]`, `scores [n, C]` (sigmoids) and `bird [n]`, like the SavedModel's
`serving_default`. Inside it: the mel filterbank and log (as `birdclef.features.logmel_tf`), the
stored-precision rounding, TF Transform's fitted normalisation (constants) and the network.

Outside it, in numpy (`chunk_power`): cutting into chunks by the one chunking rule
(`features.chunk_starts`), and the STFT power, computed once per frame shared by overlapping
chunks (scipy's float32 FFT): 1.1 CPU-ms per chunk where the graph's own STFT, which tf2onnx can
only write as a DFT matrix product (opset 13), took 5.9. This is a second implementation of the
first half of the reference log-mel, and exists only because tests/test_onnx.py holds
log(chunk_power @ mel + 1e-6) equal to `features.logmel_tf` on real recordings: 99 % of values
within 1e-4, all within 1e-3 (the largest at the log floor of quiet clips, where logmel_tf's own
float32 FFT is as far from an exact reference).
"""
from __future__ import annotations

import json
import os

import numpy as np

from birdclef import fileio
from birdclef.config import DEFAULT_FEATURES, FeatureConfig

OPSET = 17
FILENAME = "model.onnx"


class OnnxError(Exception):
    pass


def _hann(n: int) -> np.ndarray:
    """tf.signal.hann_window(n) (periodic)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def _power(frames: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    import scipy.fft

    z = scipy.fft.rfft(frames * _hann(cfg.n_fft), n=cfg.n_fft, axis=-1)
    return (z.real ** 2 + z.imag ** 2).astype(np.float32)


def chunk_power(wave: np.ndarray, starts: list[int], cfg: FeatureConfig = DEFAULT_FEATURES) -> np.ndarray:
    """numpy: [n, frames, n_fft/2 + 1] STFT power of the chunks of `wave` starting at `starts`, as
    `features.logmel_tf` frames each chunk (frames every hop_length from its start, zero-padded past
    its end). Frames lying wholly inside a chunk are frames of the whole wave, computed once for all
    the chunks that share them; the last few frames of each chunk (which reach past its end) are
    computed from the chunk with its zero padding."""
    from birdclef.features import chunk_samples, frames_per_chunk

    wave = np.asarray(wave, np.float32)
    size, hop, n_fft = chunk_samples(cfg), cfg.hop_length, cfg.n_fft
    n_frames = frames_per_chunk(cfg)
    full = max(0, min(n_frames, (size - n_fft) // hop + 1))  # frames with no padding in them
    if len(wave) < size:
        wave = np.pad(wave, (0, size - len(wave)))
    out = np.empty((len(starts), n_frames, n_fft // 2 + 1), np.float32)
    on_grid = [i for i, s in enumerate(starts) if s % hop == 0]
    if on_grid and full:
        first, last = starts[on_grid[0]] // hop, starts[on_grid[-1]] // hop + full  # frame indices on the wave
        frames = np.lib.stride_tricks.sliding_window_view(wave[first * hop:(last - 1) * hop + n_fft], n_fft)[::hop]
        shared = _power(frames, cfg)
        for i in on_grid:
            k = starts[i] // hop - first
            out[i, :full] = shared[k:k + full]
    grid = set(on_grid)
    for i, s in enumerate(starts):
        lo = full if (i in grid and full) else 0
        chunk = np.pad(wave[s:s + size], (0, n_fft))
        idx = np.arange(lo, n_frames) * hop
        frames = np.stack([chunk[t:t + n_fft] for t in idx]) if len(idx) else np.zeros((0, n_fft), np.float32)
        if len(idx):
            out[i, lo:] = _power(frames, cfg)
    return out


def float16_rounding_tf(x):
    """`records.stored_precision_tf` (float32 -> float16 -> float32: the mels' stored precision) in float32
    arithmetic, for the ONNX graph: tf2onnx's cast optimiser removes a float32->float16->float32 cast pair
    as if it lost nothing, and the exported model then skipped the rounding the SavedModel does (score
    differences up to 1.1e-3). Normal float16 range: a Veltkamp split keeps 11 significant bits;
    subnormal range (|x| < 2**-14): adding and removing 0.75 rounds to float16's grid of 2**-24. Equal to
    the cast (tested) except on rare exact ties, which may round the other way."""
    import tensorflow as tf

    c = x * 8193.0  # 2**13 + 1: float32's 24 bits less 13
    normal = c - (c - x)
    tiny = (x + 0.75) - 0.75
    return tf.where(tf.abs(x) < 2.0 ** -14, tiny, normal)


def export(ckpt_dir: str, out: str | None = None, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    """Write ckpt_dir/model.onnx (or `out`) from a finished training run; returns its path."""
    from birdclef.features import import_tensorflow

    tf = import_tensorflow()
    import tf2onnx

    from birdclef.features import _mel_matrix, frames_per_chunk

    from birdclef import ensemble, export as saved_model

    saved = tf.saved_model.load(fileio.join(ckpt_dir, "export"))
    classes = [c.decode() for c in saved.signatures["labels"]()["classes"].numpy()]
    try:  # each network with TF Transform's fitted normalisation, as exported (several: an ensemble)
        members = ensemble.members(ckpt_dir, len(classes), cfg)
    except ensemble.EnsembleError as e:
        raise OnnxError(str(e)) from e
    spec = [tf.TensorSpec([None, frames_per_chunk(cfg), cfg.n_fft // 2 + 1], tf.float32, name="power")]
    mel_matrix = _mel_matrix(cfg)

    @tf.function(input_signature=spec)
    def serve(power):
        logmel = tf.math.log(tf.tensordot(power, tf.constant(mel_matrix), 1) + 1e-6)  # as features.logmel_tf
        o = saved_model.outputs(members, logmel, float16_rounding_tf)  # rounded as the SavedModel rounds
        return {k: tf.identity(o[k], name=k) for k in ("embedding", "scores", "bird")}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    meta = {"classes": json.dumps(classes), "features": cfg.to_json(), "birdclef": "1"}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    out = out or fileio.join(ckpt_dir, FILENAME)
    fileio.write_bytes(out, proto.SerializeToString())
    return out


class OnnxServing:
    """Calls like the SavedModel's serving_default: `serve(waveform=wave)` -> dict of numpy arrays
    (embedding, scores, bird, chunk_start_s), with ONNX Runtime; `classes` from the model's metadata."""

    def __init__(self, path: str, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        with fileio.open_file(path, "rb") as f:
            data = f.read()
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if "classes" not in props:
            raise OnnxError(f"{path}: an ONNX model without birdclef's class list; fix: make it with "
                            "`birdclef export --format onnx`")
        self.classes = json.loads(props["classes"])
        self.cfg = FeatureConfig(**json.loads(props["features"]))
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, waveform, batch: int = 64) -> dict:
        from birdclef.features import chunk_starts

        wave = np.asarray(waveform, np.float32)
        starts = chunk_starts(len(wave), self.cfg)
        parts = []
        for i in range(0, len(starts), batch):
            parts.append(self.session.run(None, {self.input: chunk_power(wave, starts[i:i + batch], self.cfg)}))
        out = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.outputs)}
        out["chunk_start_s"] = np.asarray(starts, np.float32) / self.cfg.sample_rate
        return out
