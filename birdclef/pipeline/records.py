"""TFRecord schemas and `tf.data` readers.

Chunk records (stage 1 output `chunks/<split>-*.tfrecord`, stage 2 output
`<split>/chunks-*.tfrecord`), one tf.train.Example per 2 s chunk:
  recording_id  bytes   `<label>/<file>`, `nonbird/...`, or `soundscape/<audio_id>_<site>`
  label         bytes   primary label, `nocall` for non-bird audio and nocall windows
  labels        bytes   all labels, space separated (primary + secondary; birds of a window)
  split         bytes   train | val | test
  chunk_index   int64   position of the chunk in its recording
  row_id        bytes   BirdCLEF row id of the 5 s soundscape window ('' elsewhere)
  mel           bytes   [frames, n_mels] float32 little-endian: log-mel (stage 1) or
                        normalised log-mel (stage 2); raw bytes serialise ~500x faster than a
                        FloatList and take the same space. The readers below decode it.

Triple records (`<split>/triples-*.tfrecord`): anchor_mel, positive_mel,
negative_mel (bytes, as `mel`), anchor_label, negative_label, anchor_id,
anchor_chunk. The readers yield mels as float32 [batch, frames, n_mels].
"""
from __future__ import annotations

import numpy as np

from birdclef.config import DEFAULT_FEATURES, FeatureConfig
from birdclef.features import mel_shape

STRING_FEATURES = ("recording_id", "label", "labels", "split", "row_id")
# Bumped whenever the record layout changes, so finished outputs of an older layout are not reused.
FORMAT_VERSION = 2


def _bytes(v):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))


def _mel(a):
    """A mel as float32 array, or already as its little-endian float32 bytes."""
    import tensorflow as tf

    raw = a if isinstance(a, bytes) else np.asarray(a, "<f4").tobytes()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))


def _int(v):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def chunk_example(recording_id: str, label: str, labels: str, split: str, chunk_index: int,
                  mel: np.ndarray, row_id: str = "") -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        "recording_id": _bytes(recording_id), "label": _bytes(label), "labels": _bytes(labels),
        "split": _bytes(split), "chunk_index": _int(chunk_index), "row_id": _bytes(row_id), "mel": _mel(mel),
    })).SerializeToString()


def chunk_feature_spec(cfg: FeatureConfig = DEFAULT_FEATURES) -> dict:
    import tensorflow as tf

    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in (*STRING_FEATURES, "mel")}
    spec["chunk_index"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def decode_mel(raw, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF op: serialised mel bytes [batch] -> float32 [batch, frames, n_mels]."""
    import tensorflow as tf

    return tf.reshape(tf.io.decode_raw(raw, tf.float32, little_endian=True), [-1, *mel_shape(cfg)])


def triple_example(anchor: dict, positive: dict, negative: dict) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        "anchor_mel": _mel(anchor["mel"]), "positive_mel": _mel(positive["mel"]),
        "negative_mel": _mel(negative["mel"]),
        "anchor_label": _bytes(anchor["label"]), "negative_label": _bytes(negative["label"]),
        "anchor_id": _bytes(anchor["recording_id"]), "anchor_chunk": _int(anchor["chunk_index"]),
    })).SerializeToString()


def triple_feature_spec(cfg: FeatureConfig = DEFAULT_FEATURES) -> dict:
    import tensorflow as tf

    spec = {k: tf.io.FixedLenFeature([], tf.string)
            for k in ("anchor_mel", "positive_mel", "negative_mel", "anchor_label", "negative_label", "anchor_id")}
    spec["anchor_chunk"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def parse_batch(serialised, spec: dict, cfg: FeatureConfig = DEFAULT_FEATURES) -> dict:
    """TF op: a batch of serialised records -> features, with every `*mel` decoded to float32."""
    import tensorflow as tf

    ex = tf.io.parse_example(serialised, spec)
    return {k: decode_mel(v, cfg) if k.endswith("mel") else v for k, v in ex.items()}


def _dataset(pattern: str, spec: dict, batch_size: int, shuffle: int, seed: int | None,
             cfg: FeatureConfig = DEFAULT_FEATURES):
    import tensorflow as tf

    def parse(x):
        return parse_batch(x, spec, cfg)

    files = tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecords match {pattern}; fix: run `birdclef transform` first")
    ds = tf.data.TFRecordDataset(sorted(files), num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(shuffle, seed=seed)
    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def transformed_dir(work_dir: str) -> str:
    from birdclef import fileio

    return fileio.join(work_dir, "transform", "tft")


def chunks_dataset(work_dir: str, split: str, batch_size: int = 64, shuffle: int = 0, seed: int | None = None,
                   cfg: FeatureConfig = DEFAULT_FEATURES, kind: str = "chunks"):
    """Normalised labelled chunks of a split (kind='windows' for soundscape window chunks)."""
    from birdclef import fileio

    return _dataset(fileio.join(transformed_dir(work_dir), split, f"{kind}-*.tfrecord"),
                    chunk_feature_spec(cfg), batch_size, shuffle, seed, cfg)


def triples_dataset(work_dir: str, split: str, batch_size: int = 64, shuffle: int = 0, seed: int | None = None,
                    cfg: FeatureConfig = DEFAULT_FEATURES):
    """(anchor, positive, negative) normalised chunk triples of a split."""
    from birdclef import fileio

    return _dataset(fileio.join(transformed_dir(work_dir), split, "triples-*.tfrecord"),
                    triple_feature_spec(cfg), batch_size, shuffle, seed, cfg)
