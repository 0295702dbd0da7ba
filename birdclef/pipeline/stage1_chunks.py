"""Stage 1 (Beam, parallel): decode every recording exactly once -> chunks -> log-mel.

Input elements come from the preprocess outputs (recordings.csv, soundscapes.csv
with the soundscape window labels). Outputs under OUT (= WORK_DIR/transform/chunks):
  <split>-*.tfrecord          chunk records (birdclef.pipeline.records), per split;
                              nocall windows of soundscapes are chunks with label nocall
  windows-<split>-*.tfrecord  chunk records of every labelled 5 s soundscape window
  counts-*.jsonl              one line per decoded recording: id, split, label, n_chunks, seconds
  quarantine-*.jsonl          one line per unusable recording: path, reason, message
A recording is decoded in blocks (bounded memory) and its examples are emitted
only once it decoded completely, so a file found truncated or silent at its end
leaves no chunks behind.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import apache_beam as beam
import numpy as np

from birdclef.config import NOCALL, AudioConfig, FeatureConfig

SPLITS = ("train", "val", "test")
QUARANTINE, COUNTS = "quarantine", "counts"
MEL_BATCH = 32


def chunk_dest(split: str) -> str:
    """The output (file prefix under OUT) of a split's chunk records."""
    return split


def window_dest(split: str) -> str:
    """The output of a split's soundscape window records."""
    return f"windows-{split}"


def outputs() -> dict[str, str]:
    """Every output of stage 1: file prefix -> suffix."""
    return {**{chunk_dest(s): ".tfrecord" for s in SPLITS}, **{window_dest(s): ".tfrecord" for s in SPLITS},
            QUARANTINE: ".jsonl", COUNTS: ".jsonl"}


class Progress:
    """A progress line on stderr at most every `every_s` seconds, per process.

    A Beam stage reports nothing until it ends; on hours of audio that is minutes of
    silence. Each worker process (or the in-memory runner) counts what its threads
    decoded; DirectRunner's workers write to the terminal that started them."""

    _lock = threading.Lock()
    _state: dict = {}

    def __init__(self, total_items: int, total_seconds: float, every_s: float = 30.0):
        self.total_items, self.total_seconds, self.every_s = total_items, total_seconds, every_s
        self.run = os.urandom(8).hex()  # counts are per pipeline run, also in a long-lived process

    def start(self) -> dict:
        """The process's counts, started by the first worker (thread) ready to decode."""
        now = time.monotonic()
        return self._state.setdefault(self.run, {"n": 0, "s": 0.0, "t0": now, "last": now})

    def add(self, seconds: float) -> None:
        with self._lock:
            st = self.start()
            st["n"] += 1
            st["s"] += seconds
            now = time.monotonic()
            if now - st["last"] < self.every_s:
                return
            st["last"] = now
            n, secs, rate = st["n"], st["s"], st["s"] / max(now - st["t0"], 1e-9)
        print(f"transform: stage 1: process {os.getpid()}: {n} of {self.total_items} recordings, "
              f"{secs / 3600:.2f} of {self.total_seconds / 3600:.2f} h of audio ({rate:.0f} audio-s per s here)",
              file=sys.stderr, flush=True)


class ChunkRecording(beam.DoFn):
    """A work item -> (output, record) pairs: its chunk or window records, then one counts line;
    or one quarantine line if the recording is unusable."""

    def __init__(self, audio_cfg: AudioConfig, feature_cfg: FeatureConfig, progress: Progress | None = None):
        self.acfg, self.fcfg = audio_cfg, feature_cfg
        self.progress = progress
        self.built_in = os.getpid()  # the process that built the pipeline

    def setup(self):
        from birdclef.features import import_tensorflow

        # A worker process: one core each, parallelism comes from Beam workers. Not in the
        # in-memory runner's own process, which goes on to stage 2 (and `demo` to training).
        import_tensorflow(one_core=os.getpid() != self.built_in)
        if self.progress is not None:
            self.progress.start()

    def _mels(self, chunks):
        """Log-mels of an iterable of (start sample, chunk), MEL_BATCH at a time (bounded memory)."""
        from birdclef.features import logmel_chunks

        starts, batch = [], []
        for start, c in chunks:
            starts.append(start)
            batch.append(c)
            if len(batch) == MEL_BATCH:
                yield from logmel_chunks(starts, batch, self.fcfg)
                starts, batch = [], []
        if batch:
            yield from logmel_chunks(starts, batch, self.fcfg)

    def process(self, item):
        from birdclef import audio
        from birdclef.features import stream_chunks
        from birdclef.pipeline.records import chunk_example

        beam.metrics.Metrics.counter("birdclef", "recordings_in").inc()
        try:
            if item["kind"] == "soundscape":
                outputs = list(self._soundscape(item))
            else:
                chunks = stream_chunks(audio.stream(item["path"], self.acfg), self.fcfg)
                labels = " ".join([item["label"], *item.get("secondary", [])])
                outputs = [(chunk_dest(item["split"]), chunk_example(
                    item["recording_id"], item["label"], labels, item["split"], i, mel))
                    for i, mel in enumerate(self._mels(chunks))]
                n = len(outputs)
        except audio.AudioError as e:
            beam.metrics.Metrics.counter("birdclef", "quarantined").inc()
            if self.progress is not None:
                self.progress.add(0.0)
            yield QUARANTINE, json.dumps(
                {**e.to_dict(), "recording_id": item["recording_id"], "stage": "transform:stage1"})
            return
        if item["kind"] == "soundscape":
            n = sum(1 for dest, _ in outputs if dest == window_dest(item["split"]))
        if self.progress is not None:
            self.progress.add(item.get("seconds") or n * self.fcfg.hop_s)
        beam.metrics.Metrics.counter("birdclef", "chunks").inc(n)
        yield from outputs
        yield COUNTS, json.dumps({
            "recording_id": item["recording_id"], "split": item["split"], "label": item["label"],
            "kind": item["kind"], "n_chunks": n, "path": item["path"]})

    def _soundscape(self, item):
        from birdclef import audio
        from birdclef.features import chunk_starts, cut_chunks
        from birdclef.pipeline.records import chunk_example

        wave = audio.load(item["path"], self.acfg, allow_silent=True)
        sr, win = self.fcfg.sample_rate, int(self.fcfg.window_s * self.fcfg.sample_rate)
        index = 0
        for row_id, end_s, birds in item["windows"]:
            end = int(round(end_s * sr))
            window = wave[max(0, end - win):end]
            window = np.pad(window, (0, win - len(window)))
            for mel in self._mels(zip(chunk_starts(win, self.fcfg), cut_chunks(window, self.fcfg))):
                ex = chunk_example(item["recording_id"], NOCALL if birds == NOCALL else birds.split()[0],
                                   birds, item["split"], index, mel, row_id=row_id)
                yield window_dest(item["split"]), ex
                if birds == NOCALL:  # nocall windows also train the bird-vs-not head
                    yield chunk_dest(item["split"]), chunk_example(
                        item["recording_id"], NOCALL, NOCALL, item["split"], index, mel, row_id=row_id)
                index += 1


def balanced_order(items: list[dict], parts: int) -> list[dict]:
    """Items longest first, in an order that deals them evenly to `parts` workers.

    DirectRunner gives a stage's input to its N workers as fixed, round-robin parts (the
    keys' insertion order after the Reshuffle), one bundle each, with no work stealing: in
    the order given, the longest recordings could land mostly on one worker, which then runs
    alone at the end (0.2-0.4 s of a 13 s run on 3.3 h, 2 threads, measured). Longest first,
    with every other round of N reversed ("snake"), each worker gets about the same audio.
    Other runners balance work themselves; the order does them no harm."""
    ranked = sorted(items, key=lambda i: -float(i.get("seconds") or 0.0))
    if parts <= 1:
        return ranked
    rounds = [ranked[k:k + parts] for k in range(0, len(ranked), parts)]
    return [i for r, group in enumerate(rounds) for i in (group[::-1] if r % 2 else group)]


def build(pipeline, items: list[dict], out: str, audio_cfg: AudioConfig, feature_cfg: FeatureConfig):
    """Add stage 1 to a Beam pipeline; `items` are dicts made by `work_items`."""
    from apache_beam.options.pipeline_options import DirectOptions

    from birdclef.pipeline.shards import WriteShards

    workers = pipeline.options.view_as(DirectOptions).direct_num_workers or 1
    return (pipeline
            | "Recordings" >> beam.Create(balanced_order(items, workers), reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "DecodeChunkMel" >> beam.ParDo(ChunkRecording(audio_cfg, feature_cfg, Progress(
                len(items), sum(i.get("seconds", 0.0) for i in items))))
            | "WriteOutputs" >> WriteShards(out, outputs()))


def work_items(pre_dir: str, data_dir: str) -> list[dict]:
    """Stage 1 elements from the preprocess outputs."""
    import io

    import pandas as pd

    from birdclef import fileio
    from birdclef.data import metadata

    rec = pd.read_csv(io.StringIO(fileio.read_text(fileio.join(pre_dir, "recordings.csv"))),
                      dtype=str, keep_default_na=False)
    items = []
    for r in rec.itertuples(index=False):
        try:
            secondary = metadata.parse_label_list(r.secondary_labels)
        except (ValueError, SyntaxError):
            secondary = []
        items.append({"kind": "recording", "recording_id": r.recording_id, "label": r.label,
                      "secondary": secondary, "split": r.split, "path": r.path, "seconds": float(r.duration_s)})
    sc = pd.read_csv(io.StringIO(fileio.read_text(fileio.join(pre_dir, "soundscapes.csv"))),
                     dtype=str, keep_default_na=False)
    if len(sc):
        labels = metadata.read_soundscape_labels(data_dir)
        for r in sc.itertuples(index=False):
            rows = labels[(labels.audio_id == r.audio_id) & (labels.site == r.site)].sort_values("end")
            items.append({"kind": "soundscape", "recording_id": f"soundscape/{r.audio_id}_{r.site}",
                          "label": "soundscape", "split": r.split, "path": r.path, "seconds": float(r.duration_s),
                          "windows": [(w.row_id, float(w.end), w.birds) for w in rows.itertuples(index=False)]})
    return items
