"""TFRecord schemas and `tf.data` readers.

Chunk records (stage 1 output `chunks/<split>-*.tfrecord`, stage 2 output
`<split>/chunks-*.tfrecord`), one tf.train.Example per 2 s chunk:
  recording_id  bytes   `<label>/<file>`, `nonbird/...`, or `soundscape/<audio_id>_<site>`
  label         bytes   primary label, `nocall` for non-bird audio and nocall windows
  labels        bytes   all labels, space separated (primary + secondary; birds of a window)
  split         bytes   train | val | test
  chunk_index   int64   position of the chunk in its recording
  row_id        bytes   BirdCLEF row id of the 5 s soundscape window ('' elsewhere)
  mel           bytes   [frames, n_mels] float16 little-endian (MEL_DTYPE): log-mel (stage 1)
                        or normalised log-mel (stage 2); raw bytes serialise ~500x faster than a
                        FloatList. The readers below decode it to float32.

Mels are stored at float16 precision (11 significant bits: 0.05 % relative, under 0.008 on
the log-mel's range of about -14..+10): half the bytes of float32 to write, read, and move
between Beam transforms (stage 2 is bound by moving them), and half the disk. The rounding is
part of the feature definition: exported models round the log-mel and the normalised log-mel
the same way (`stored_precision_tf`), so training and serving see identical inputs.

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
FORMAT_VERSION = 3
MEL_DTYPE = "<f2"


# Hand-written protobuf encoding of tf.train.Example (tensorflow/core/example/{example,feature}.proto):
#   Example   { Features features = 1; }
#   Features  { map<string, Feature> feature = 1; }      map entry: { string key = 1; Feature value = 2; }
#   Feature   { BytesList bytes_list = 1; Int64List int64_list = 3; }
#   BytesList { repeated bytes value = 1; }   Int64List { repeated int64 value = 1 [packed = true]; }
# tf.train.Example(...).SerializeToString() copies a 100 KB mel three times and builds message objects;
# this copies it once (b"".join of a buffer) and ran ~3x faster per chunk. Parsed by TF it gives the
# same Example (tested).


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement, as protobuf encodes negative values
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_example(features: dict) -> bytes:
    """Serialised tf.train.Example of {name: str | bytes | int | float32 array}: a str or bytes
    becomes a one-value BytesList, an int a one-value Int64List, an array its MEL_DTYPE bytes
    (as `mel`)."""
    parts, total = [], 0
    for key, value in features.items():
        payload = None
        if isinstance(value, (int, np.integer)):
            ints = _varint(int(value))
            int64_list = b"\x0a" + _varint(len(ints)) + ints
            head = b"\x1a" + _varint(len(int64_list)) + int64_list
            size = len(head)
        else:
            if isinstance(value, str):
                value = value.encode()
            elif isinstance(value, np.ndarray):
                value = np.ascontiguousarray(value, MEL_DTYPE)
            n = value.nbytes if isinstance(value, np.ndarray) else len(value)
            inner = b"\x0a" + _varint(n)
            head = b"\x0a" + _varint(len(inner) + n) + inner
            payload, size = value, len(head) + n
        k = key.encode()
        entry_head = b"\x0a" + _varint(len(k)) + k + b"\x12" + _varint(size)
        entry_len = len(entry_head) + size
        parts.append(b"\x0a" + _varint(entry_len) + entry_head + head)
        if payload is not None:
            parts.append(payload)
        total += 1 + len(_varint(entry_len)) + entry_len
    return b"".join([b"\x0a" + _varint(total), *parts])


def chunk_example(recording_id: str, label: str, labels: str, split: str, chunk_index: int,
                  mel, row_id: str = "") -> bytes:
    """mel: float array (stored as MEL_DTYPE), or already its MEL_DTYPE bytes."""
    return encode_example({"recording_id": recording_id, "label": label, "labels": labels, "split": split,
                           "chunk_index": chunk_index, "row_id": row_id, "mel": mel})


def chunk_feature_spec(cfg: FeatureConfig = DEFAULT_FEATURES) -> dict:
    import tensorflow as tf

    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in (*STRING_FEATURES, "mel")}
    spec["chunk_index"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def decode_mel(raw, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF op: serialised mel bytes [batch] -> float32 [batch, frames, n_mels]."""
    import tensorflow as tf

    mel = tf.io.decode_raw(raw, tf.float16, little_endian=True)
    return tf.reshape(tf.cast(mel, tf.float32), [-1, *mel_shape(cfg)])


def stored_precision_tf(x):
    """TF op: float32 values rounded as the records store them (to MEL_DTYPE and back, round to
    nearest even, as numpy's astype). Exported models apply it where the pipeline stores mels."""
    import tensorflow as tf

    return tf.cast(tf.cast(x, tf.float16), tf.float32)


def parse_chunk(serialised: bytes) -> dict:
    """A serialised chunk record -> {recording_id, label, labels, split, row_id, chunk_index, mel (bytes)}."""
    from tensorflow.core.example import example_pb2

    f = example_pb2.Example.FromString(serialised).features.feature
    out = {k: f[k].bytes_list.value[0].decode() for k in STRING_FEATURES}
    out["chunk_index"] = int(f["chunk_index"].int64_list.value[0])
    out["mel"] = f["mel"].bytes_list.value[0]
    return out


def parse_chunk_key(serialised: bytes) -> tuple[str, int]:
    """(recording_id, chunk_index) of a serialised chunk record."""
    c = parse_chunk(serialised)
    return c["recording_id"], c["chunk_index"]


def triple_example(anchor: dict, positive: dict, negative: dict) -> bytes:
    return encode_example({
        "anchor_mel": anchor["mel"], "positive_mel": positive["mel"], "negative_mel": negative["mel"],
        "anchor_label": anchor["label"], "negative_label": negative["label"],
        "anchor_id": anchor["recording_id"], "anchor_chunk": anchor["chunk_index"]})


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
