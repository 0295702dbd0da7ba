"""Stage 2 (Beam + TF Transform): normalise log-mels with statistics of the train split only.

`preprocessing_fn` standardises every mel bin with its mean and variance over
all frames of all *train* chunks (tft.mean / tft.var). The analysis runs on
the train split alone; the resulting transform_fn is applied to every split.
Input is fed through TFXIO (record batches). Outputs under OUT
(= WORK_DIR/transform/tft):
  transform_fn/, transformed_metadata/, metadata/ (raw schema)
  <split>/chunks-*.tfrecord    normalised labelled chunks
  <split>/windows-*.tfrecord   normalised soundscape window chunks
  <split>/triples-*.tfrecord   (anchor, positive, negative) normalised chunks, joined by index
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np

from birdclef import fileio
from birdclef.config import FeatureConfig
from birdclef.pipeline.stage1_chunks import SPLITS

EPS = 1e-6
PASSTHROUGH = ("recording_id", "label", "labels", "split", "chunk_index", "row_id")


def make_preprocessing_fn(cfg: FeatureConfig):
    def preprocessing_fn(inputs):
        import tensorflow as tf
        import tensorflow_transform as tft

        from birdclef.pipeline.records import decode_mel

        mel = decode_mel(inputs["mel"], cfg)
        frames = tf.reshape(mel, [-1, cfg.n_mels])  # every frame of every chunk
        mean = tft.mean(frames, reduce_instance_dims=False, name="mel_mean")
        var = tft.var(frames, reduce_instance_dims=False, name="mel_var")
        out = {k: inputs[k] for k in PASSTHROUGH}
        out["mel"] = (mel - mean) / tf.sqrt(var + EPS)
        return out

    return preprocessing_fn


def raw_schema(cfg: FeatureConfig):
    from tensorflow_transform.tf_metadata import schema_utils

    from birdclef.pipeline.records import chunk_feature_spec

    return schema_utils.schema_from_feature_spec(chunk_feature_spec(cfg))


def _chunks_of(batch) -> list[dict]:
    """TransformDataset output (record batch, passthrough) -> chunk dicts, mel as MEL_DTYPE bytes.

    Works on whole Arrow columns: per-row Python conversion of instance dicts cost
    about 2 ms per chunk."""
    from birdclef.pipeline.records import MEL_DTYPE

    rb, _ = batch
    n = rb.num_rows
    cols = {name: rb.column(i).flatten() for i, name in enumerate(rb.schema.names)}
    mel = cols["mel"].to_numpy(zero_copy_only=False).astype(MEL_DTYPE).reshape(n, -1)
    strings = {k: [v.decode() for v in cols[k].to_pylist()] for k in ("recording_id", "label", "labels", "split",
                                                                         "row_id")}
    index = cols["chunk_index"].to_numpy(zero_copy_only=False)
    return [{**{k: v[i] for k, v in strings.items()}, "chunk_index": int(index[i]), "mel": mel[i].tobytes()}
            for i in range(n)]


def _encode_chunk(c: dict) -> bytes:
    from birdclef.pipeline.records import chunk_example

    return chunk_example(c["recording_id"], c["label"], c["labels"], c["split"], c["chunk_index"], c["mel"],
                         c["row_id"])


def _triple_refs(t: dict):
    for role in ("anchor", "positive", "negative"):
        rid, idx = t[role]
        yield (rid, int(idx)), ((t["id"], t["split"]), role)


def _route(kv):
    _, grouped = kv
    where = list(grouped["chunk"])
    if not where:
        return
    for tid, role in grouped["ref"]:
        yield tid, (role, where[0])


def _index_records(path: str):
    """A written chunk file -> ((recording_id, chunk_index), (path, offset)) per record.

    Triples are joined on these small locations, not on the mels: Beam's local runner holds every
    element crossing a group-by in memory, and mels there cost ~0.4 MB per chunk (measured)."""
    from apache_beam.io.tfrecordio import _TFRecordUtil

    from birdclef.pipeline.records import parse_chunk_key

    with fileio.open_file(path, "rb") as f:
        while True:
            offset = f.tell()
            record = _TFRecordUtil.read_record(f)  # the reader of the framing WriteShards writes
            if record is None:
                return
            yield parse_chunk_key(record), (path, offset)


class _Assemble(beam.DoFn):
    """(triple, [(role, location)]) -> (split/triples, triple record), reading its 3 chunks from the written
    chunk files (open files are kept per bundle)."""

    def start_bundle(self):
        self._files = {}

    def _chunk(self, where) -> dict:
        from apache_beam.io.tfrecordio import _TFRecordUtil

        from birdclef.pipeline.records import parse_chunk

        path, offset = where
        if path not in self._files:
            ctx = fileio.open_file(path, "rb")
            self._files[path] = (ctx, ctx.__enter__())
        f = self._files[path][1]
        f.seek(offset)
        return parse_chunk(_TFRecordUtil.read_record(f))

    def process(self, kv):
        from birdclef.pipeline.records import triple_example

        (_, split), parts = kv
        parts = dict(parts)
        if set(parts) != {"anchor", "positive", "negative"}:
            beam.metrics.Metrics.counter("birdclef", "incomplete_triples").inc()
            return
        chunks = {role: self._chunk(where) for role, where in parts.items()}
        yield f"{split}/triples", triple_example(chunks["anchor"], chunks["positive"], chunks["negative"])

    def finish_bundle(self):
        for ctx, _ in self._files.values():
            ctx.__exit__(None, None, None)
        self._files = {}


def _has_records(pattern: str) -> bool:
    return any(fileio.size(p) > 0 for p in fileio.glob(pattern))


def build(pipeline, chunks_dir: str, triples_path: str, out: str, cfg: FeatureConfig, temp_dir: str):
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    from birdclef.pipeline.shards import WriteShards

    schema = raw_schema(cfg)
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), fileio.join(out, "metadata"))

    def source(patterns: list[str], name: str):
        """TFXIO record batches of the records matching `patterns`.

        Not `TFExampleRecord.BeamSource()`: given several patterns it reads each apart and
        flattens them, and Beam's local runner held every record of such a flatten in memory
        (measured: peak RSS 1.30 GB for 2033 chunks, 1.72 GB for 4047, against 0.81 GB for both
        read as here)."""
        t = tfxio.TFExampleRecord(file_pattern=patterns, schema=schema, telemetry_descriptors=["birdclef"])
        raw = (pipeline | f"{name}Files" >> beam.Create(patterns)
               | f"Read{name}" >> beam.io.ReadAllFromTFRecord(coder=beam.coders.BytesCoder()))
        return raw | f"Decode{name}" >> t.RawRecordToRecordBatch(), t.TensorAdapterConfig()

    with tft_beam.Context(temp_dir=temp_dir):
        train_pattern = fileio.join(chunks_dir, "train-*.tfrecord")
        if not _has_records(train_pattern):
            raise ValueError(f"no train chunks in {chunks_dir}: nothing to fit the normalisation on; "
                             f"fix: check the preprocess split and quarantine.csv")
        train = source([train_pattern], "TrainForAnalysis")
        transform_fn = train | "AnalyzeTrainOnly" >> tft_beam.AnalyzeDataset(make_preprocessing_fn(cfg))
        transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)

        # One TransformDataset per kind over all splits, and one sink per kind, routed by split:
        # Beam's cost per transform and bundle is fixed, so fewer transforms is faster on any input
        # size. Not one sink for all kinds: flattening their inputs copies every record once more.
        for kind, prefix in (("chunks", ""), ("windows", "windows-")):
            splits = [s for s in SPLITS if _has_records(fileio.join(chunks_dir, f"{prefix}{s}-*.tfrecord"))]
            if not splits:
                continue
            name = kind.title()
            raw = source([fileio.join(chunks_dir, f"{prefix}{s}-*.tfrecord") for s in splits], name)
            data, _ = ((raw, transform_fn)
                       | f"Transform{name}" >> tft_beam.TransformDataset(output_record_batches=True))
            chunks = data | f"As{name}" >> beam.FlatMap(_chunks_of)
            published = (chunks
                         | f"Encode{name}" >> beam.Map(lambda c, kind=kind: (f"{c['split']}/{kind}", _encode_chunk(c)))
                         | f"Write{name}" >> WriteShards(out, {f"{s}/{kind}": ".tfrecord" for s in splits}))
            if kind != "chunks":
                continue
            # Triples: joined on chunk locations in the written chunk files (read after they are
            # published), and each triple's 3 mels read back from there: no mel crosses a group-by.
            located = (published | "ChunkFiles" >> beam.FlatMap(lambda paths: paths)
                       | "SpreadChunkFiles" >> beam.Reshuffle()
                       | "IndexChunks" >> beam.FlatMap(_index_records))
            triples = (pipeline | "ReadTriples" >> beam.io.ReadFromText(triples_path)
                       | "ParseTriples" >> beam.Map(json.loads))
            refs = triples | "TripleRefs" >> beam.FlatMap(_triple_refs)
            assembled = ({"chunk": located, "ref": refs}
                         | "JoinChunks" >> beam.CoGroupByKey()
                         | "Route" >> beam.FlatMap(_route)
                         | "ByTriple" >> beam.GroupByKey()
                         | "Assemble" >> beam.ParDo(_Assemble()))
            assembled | "WriteTriples" >> WriteShards(out, {f"{s}/triples": ".tfrecord" for s in splits})


def fitted_normalisation(tft_dir: str, cfg: FeatureConfig):
    """(mean, std) per mel band as fitted by stage 2, read back through the saved transform_fn.

    Used to put the very same normalisation inside exported models as constants,
    so serving needs neither TF Transform nor birdclef."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from birdclef.features import mel_shape
    from birdclef.pipeline.records import MEL_DTYPE

    out = tft.TFTransformOutput(tft_dir)
    probe = {k: tf.constant([""]) for k in ("recording_id", "label", "labels", "split", "row_id")}
    probe["chunk_index"] = tf.constant([0], tf.int64)
    values = []
    for v in (0.0, 1.0):
        probe["mel"] = tf.constant([np.full(mel_shape(cfg), v, MEL_DTYPE).tobytes()])
        values.append(out.transform_raw_features(probe)["mel"].numpy()[0, 0].astype(np.float64))
    std = 1.0 / (values[1] - values[0])
    mean = -values[0] * std
    return mean.astype(np.float32), std.astype(np.float32)
