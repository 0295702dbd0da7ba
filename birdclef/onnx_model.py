"""A trained model as ONNX, and serving it with ONNX Runtime (no TensorFlow in the process).

    birdclef export --ckpt-dir C --format onnx      -> C/model.onnx
    birdclef predict FILES --ckpt-dir C/model.onnx --out D

The ONNX graph takes raw 32 kHz mono audio cut into 2 s chunks, `chunks: float32 [n, 64000]`, and
returns `embedding [n, D]`, `scores [n, C]` (sigmoids) and `bird [n]`, like the SavedModel's
`serving_default`. Inside it: the log-mel, the stored-precision rounding, TF Transform's fitted
normalisation (constants) and the network. Cutting the recording into chunks stays outside, in numpy,
by the one chunking rule (`birdclef.features.chunk_starts` / `cut_chunks`, which `chunk_tf` is tested
equal to).

The log-mel inside is `logmel_abs_tf`: the reference `birdclef.features.logmel_tf` with the power
spectrum written as |z|^2 (tf.abs, then square) instead of re^2 + im^2, because tf2onnx converts an
FFT only when a ComplexAbs consumes it (opset 13, as a DFT matrix product). The two agree within
1e-4 on real recordings (tests/test_onnx.py holds them equal); the reference stays `logmel_tf`.
"""
from __future__ import annotations

import json
import os

import numpy as np

from birdclef import fileio
from birdclef.config import DEFAULT_FEATURES, FeatureConfig

OPSET = 13  # tf2onnx turns RFFT + ComplexAbs into a DFT product up to here; 15-18 left a ComplexAbs node
FILENAME = "model.onnx"


class OnnxError(Exception):
    pass


def logmel_abs_tf(chunks, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF ops, for the ONNX graph only: `features.logmel_tf` with the power as |z|^2 (see module doc)."""
    import tensorflow as tf

    from birdclef.features import _mel_matrix

    stft = tf.signal.stft(chunks, frame_length=cfg.n_fft, frame_step=cfg.hop_length, fft_length=cfg.n_fft,
                          window_fn=tf.signal.hann_window, pad_end=True)
    power = tf.math.square(tf.math.abs(stft))
    return tf.math.log(tf.tensordot(power, tf.constant(_mel_matrix(cfg)), 1) + 1e-6)


def _trained_model(ckpt_dir: str, n_classes: int, cfg: FeatureConfig):
    """The Keras model of a finished `birdclef train` run, with the weights its export holds."""
    import tensorflow as tf

    from birdclef import models
    from birdclef.features import mel_shape

    run = fileio.read_json(fileio.join(ckpt_dir, "run.json"))
    if not isinstance(run, dict) or "config" not in run:
        raise OnnxError(f"{ckpt_dir}: no run.json of `birdclef train`; fix: pass the --ckpt-dir of a finished run")
    c = run["config"]
    model = models.build(c["model"], mel_shape(cfg), c["embedding_dim"], n_classes)
    best = fileio.join(ckpt_dir, "best", "weights")
    if fileio.exists(best + ".index"):
        model.load_weights(best)
    else:  # no validation split: the export holds the last epoch's weights
        latest = tf.train.latest_checkpoint(fileio.join(ckpt_dir, "ckpt"))
        if latest is None:
            raise OnnxError(f"{ckpt_dir}: no trained weights (best/ or ckpt/); fix: finish `birdclef train` first")
        tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model


def export(ckpt_dir: str, out: str | None = None, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    """Write ckpt_dir/model.onnx (or `out`) from a finished training run; returns its path."""
    from birdclef.features import import_tensorflow

    tf = import_tensorflow()
    import tf2onnx

    from birdclef.features import chunk_samples
    from birdclef.pipeline.records import stored_precision_tf

    saved = tf.saved_model.load(fileio.join(ckpt_dir, "export"))
    classes = [c.decode() for c in saved.signatures["labels"]()["classes"].numpy()]
    mean, std = saved.mean.numpy(), saved.std.numpy()  # TF Transform's fitted normalisation, as exported
    model = _trained_model(ckpt_dir, len(classes), cfg)
    spec = [tf.TensorSpec([None, chunk_samples(cfg)], tf.float32, name="chunks")]

    @tf.function(input_signature=spec)
    def serve(chunks):
        mel = stored_precision_tf((stored_precision_tf(logmel_abs_tf(chunks, cfg)) - mean) / std)
        o = model(mel, training=False)
        return {"embedding": tf.identity(o["embedding"], name="embedding"),
                "scores": tf.math.sigmoid(o["logits"], name="scores"),
                "bird": tf.math.sigmoid(o["bird"], name="bird")}

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
        from birdclef.features import chunk_starts, cut_chunks

        wave = np.asarray(waveform, np.float32)
        chunks = cut_chunks(wave, self.cfg)
        parts = [self.session.run(None, {self.input: chunks[i:i + batch]}) for i in range(0, len(chunks), batch)]
        out = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.outputs)}
        out["chunk_start_s"] = np.asarray(chunk_starts(len(wave), self.cfg), np.float32) / self.cfg.sample_rate
        return out
