"""Export a trained model as a SavedModel that takes raw audio.

Signature `serving_default(waveform: float32 [n])` on 32 kHz mono audio of any
length (chunked by `chunk_tf`'s rule, log-mels by `logmel_wave_tf`) returns
  embedding      [chunks, D]   L2-normalised embeddings, one per 2 s chunk
  scores         [chunks, C]   class probabilities (independent sigmoids, multi-label; classes in `labels`)
  bird           [chunks]      probability that some bird calls in the chunk (also birds of no class)
  chunk_start_s  [chunks]      where each chunk starts, seconds
and signature `labels()` returns the class names. Chunking, the log-mel
(`birdclef.features.logmel_tf`), the per-band normalisation fitted by TF
Transform on the train split (as constants read back from transform_fn) and the
records' float16 rounding (`records.stored_precision_tf`) are inside, so it loads
and runs with plain TensorFlow:

    m = tf.saved_model.load(path)
    out = m.signatures["serving_default"](waveform=tf.constant(audio_32k_mono))
"""
from __future__ import annotations

import json

from birdclef import fileio
from birdclef.config import DEFAULT_FEATURES, FeatureConfig


def outputs(members, logmel, rounding):
    """The served outputs (embedding, scores, bird) of one trained network, or the mean of several
    (`birdclef ensemble`), on log-mels as `features.logmel_tf` makes them.

    `members`: (tf_keras model, fitted mean, fitted std) per network; each network's input is normalised
    by its own TF Transform fit and rounded where the pipeline stores mels (`rounding`: the records'
    float16 rounding, or `onnx_model.float16_rounding_tf` in the ONNX graph). Several networks: scores
    and bird presence are their mean probabilities; the embedding is theirs side by side divided by
    sqrt(n), so it stays L2-normalised and its cosine similarity is the mean of the members'."""
    logmel = rounding(logmel)
    return mean_of([network_outputs(model, rounding((logmel - mean) / std)) for model, mean, std in members])


def network_outputs(model, mel) -> dict:
    """One network's served outputs on normalised mels: embedding, and scores and bird as probabilities."""
    import tensorflow as tf

    o = model(mel, training=False)
    return {"embedding": o["embedding"], "scores": tf.math.sigmoid(o["logits"]), "bird": tf.math.sigmoid(o["bird"])}


def mean_of(outs: list[dict]) -> dict:
    """Several networks' outputs as one (see `outputs`); one network's unchanged."""
    import tensorflow as tf

    if len(outs) == 1:
        return outs[0]
    n = float(len(outs))
    return {"embedding": tf.concat([o["embedding"] for o in outs], -1) / n ** 0.5,
            "scores": tf.add_n([o["scores"] for o in outs]) / n, "bird": tf.add_n([o["bird"] for o in outs]) / n}


def save(members, classes: list[str], out: str, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    """Write the SavedModel of one network or an ensemble (`members` as in `outputs`) to `out`."""
    import tensorflow as tf

    from birdclef.features import logmel_wave_tf
    from birdclef.pipeline.records import stored_precision_tf

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.models = [m for m, _, _ in members]
            self.model = self.models[0]  # the one network of a training run, where code reads it back
            self.means = [tf.Variable(mean, trainable=False, name=f"mel_mean_{i}") for i, (_, mean, _) in enumerate(members)]
            self.stds = [tf.Variable(std, trainable=False, name=f"mel_std_{i}") for i, (_, _, std) in enumerate(members)]
            self.mean, self.std = self.means[0], self.stds[0]
            self.class_names = tf.Variable(classes, trainable=False, name="classes")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
        def serve(self, waveform):
            logmel, starts = logmel_wave_tf(waveform, cfg)  # = logmel_tf of chunk_tf's chunks (tested)
            # rounded where the pipeline stores mels: after the log-mel (stage 1) and after normalising (stage 2)
            out = outputs(list(zip(self.models, self.means, self.stds)), logmel, stored_precision_tf)
            return {**out, "chunk_start_s": tf.cast(starts, tf.float32) / float(cfg.sample_rate)}

        @tf.function(input_signature=[])
        def labels(self):
            return {"classes": tf.identity(self.class_names)}

    module = Serving()
    tf.saved_model.save(module, out, signatures={"serving_default": module.serve, "labels": module.labels})
    fileio.write_text(fileio.join(out, "birdclef.json"), json.dumps(
        {"classes": classes, "features": json.loads(cfg.to_json()), "networks": len(members)}, indent=2))
    return out


def export(model, classes: list[str], tft_dir: str, out: str, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    from birdclef.pipeline.stage2_tft import fitted_normalisation

    mean, std = fitted_normalisation(tft_dir, cfg)
    return save([(model, mean, std)], classes, out, cfg)
