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


def export(model, classes: list[str], tft_dir: str, out: str, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    import tensorflow as tf

    from birdclef.features import logmel_wave_tf
    from birdclef.pipeline.records import stored_precision_tf
    from birdclef.pipeline.stage2_tft import fitted_normalisation

    mean, std = fitted_normalisation(tft_dir, cfg)

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.mean = tf.Variable(mean, trainable=False, name="mel_mean")
            self.std = tf.Variable(std, trainable=False, name="mel_std")
            self.class_names = tf.Variable(classes, trainable=False, name="classes")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
        def serve(self, waveform):
            mel, starts = logmel_wave_tf(waveform, cfg)  # = logmel_tf of chunk_tf's chunks (tested)
            # rounded where the pipeline stores mels: after the log-mel (stage 1) and after normalising (stage 2)
            mel = stored_precision_tf((stored_precision_tf(mel) - self.mean) / self.std)
            out = self.model(mel, training=False)
            return {"embedding": out["embedding"], "scores": tf.math.sigmoid(out["logits"]),
                    "bird": tf.math.sigmoid(out["bird"]),
                    "chunk_start_s": tf.cast(starts, tf.float32) / float(cfg.sample_rate)}

        @tf.function(input_signature=[])
        def labels(self):
            return {"classes": tf.identity(self.class_names)}

    module = Serving()
    tf.saved_model.save(module, out, signatures={"serving_default": module.serve, "labels": module.labels})
    fileio.write_text(fileio.join(out, "birdclef.json"), json.dumps(
        {"classes": classes, "features": json.loads(cfg.to_json())}, indent=2))
    return out
