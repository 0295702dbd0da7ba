"""One Beam sink for all of a pipeline's outputs: (destination, record) in, sharded files out.

    records | WriteShards(out, {"train": ".tfrecord", "quarantine": ".jsonl", ...})

writes OUT/<destination>-SSSSS-of-NNNNN<suffix> for every destination, as Beam's
WriteToTFRecord and WriteToText name their shards: TFRecord framing for ".tfrecord",
one line per record for any other suffix. A destination may hold a '/'
("train/chunks" -> OUT/train/chunks-00000-of-00002.tfrecord). A destination that
received no record gets one empty shard, so every declared output exists.

Why not one WriteToTFRecord per output: each Beam file sink adds ~17 transforms and
several stages that the runner sets up and runs one after another. Stage 1 had eight
of them (3 splits x chunks and windows, quarantine, counts): 143 transforms, a third
of a second to translate and more to run, on every run, for any input size. Here
the worker that makes a record writes it at once into its bundle's file (the same
fused stage, so records never cross the runner's data plane), and one finalising
step renames the finished files. A bundle that fails and is retried leaves only
an orphan temporary file, which finalising deletes: only files of bundles that
completed are published.
"""
from __future__ import annotations

import uuid

import apache_beam as beam

from birdclef import fileio

SHARD = "{dest}-{i:05d}-of-{n:05d}{suffix}"
TEMP_PREFIX = ".shards-tmp-"


class _WriteBundles(beam.DoFn):
    """Each bundle writes its records to one temporary file per destination; yields (dest, path, count)."""

    def __init__(self, temp_dir: str, suffixes: dict[str, str]):
        self.temp_dir, self.suffixes = temp_dir, suffixes

    def start_bundle(self):
        self._open: dict[str, tuple] = {}

    def _file(self, dest: str):
        if dest not in self._open:
            if dest not in self.suffixes:
                raise ValueError(f"record for undeclared output {dest!r}; declared: {sorted(self.suffixes)}")
            if not self._open:
                fileio.makedirs(self.temp_dir)
            path = fileio.join(self.temp_dir, uuid.uuid4().hex)
            handle = fileio.open_file(path, "wb")
            self._open[dest] = (path, handle, handle.__enter__(), [0])
        return self._open[dest]

    def process(self, kv):
        from apache_beam.io.tfrecordio import _TFRecordUtil

        dest, record = kv
        path, _, f, n = self._file(dest)
        try:
            if self.suffixes[dest] == ".tfrecord":
                _TFRecordUtil.write_record(f, record)
            else:
                f.write((record if isinstance(record, bytes) else record.encode("utf-8")) + b"\n")
        except OSError as e:  # a full disk's error names no file: name the shard being written
            fileio.raise_naming(e, path)
        n[0] += 1

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        done, self._open = self._open, {}
        for dest, (path, handle, _, n) in done.items():
            try:
                handle.__exit__(None, None, None)
            except OSError as e:
                fileio.raise_naming(e, path)
            yield GlobalWindows.windowed_value((dest, path, n[0]))

    def teardown(self):
        """Close what a failed bundle left open (its files are never published)."""
        for _, handle, _, _ in getattr(self, "_open", {}).values():
            try:
                handle.__exit__(None, None, None)
            except Exception:  # the bundle already failed; its error is the one to report
                pass
        self._open = {}


def _finalize(written: list, out: str, suffixes: dict[str, str], temp_dir: str) -> list[str]:
    """Publish the files of completed bundles under their shard names; an empty shard for an empty output.

    Idempotent, as a runner may run it again after a failure: a file already moved is not moved
    again, and files of this run's names are never deleted as stale."""
    by_dest: dict[str, list[str]] = {d: [] for d in suffixes}
    for dest, path, _ in written:
        by_dest[dest].append(path)
    published = []
    for dest, paths in sorted(by_dest.items()):
        suffix = suffixes[dest]
        n = max(len(paths), 1)
        targets = [fileio.join(out, SHARD.format(dest=dest, i=i, n=n, suffix=suffix)) for i in range(n)]
        names = {fileio.basename(t) for t in targets}
        for stale in fileio.glob(fileio.join(out, f"{dest}-?????-of-?????{suffix}")):  # an earlier, other run's
            if fileio.basename(stale) not in names:
                fileio.remove(stale)
        fileio.makedirs(fileio.dirname(targets[0]))
        if not paths:
            fileio.write_bytes(targets[0], b"")
        for src, dst in zip(sorted(paths), targets):
            if fileio.exists(src):
                fileio.rename(src, dst)
            elif not fileio.exists(dst):
                raise FileNotFoundError(f"{src}: a finished bundle's file is gone before it was published as "
                                        f"{dst}; fix: rerun (the stage starts again from a clean output)")
        published += targets
    fileio.remove_tree(temp_dir)
    return published


class WriteShards(beam.PTransform):
    """(destination, bytes or str) records -> OUT/<destination>-SSSSS-of-NNNNN<suffix> (see the module doc)."""

    def __init__(self, out: str, suffixes: dict[str, str]):
        super().__init__()
        self.out, self.suffixes = out, dict(suffixes)

    def expand(self, records):
        temp_dir = fileio.join(self.out, TEMP_PREFIX + uuid.uuid4().hex)
        return (records
                | "WriteBundles" >> beam.ParDo(_WriteBundles(temp_dir, self.suffixes))
                | "Collect" >> beam.combiners.ToList()
                | "Finalize" >> beam.Map(_finalize, self.out, self.suffixes, temp_dir))
