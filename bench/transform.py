"""Transform stage 1 throughput and memory.

    python bench/transform.py [--data ../shared/data] [--workers 2] [--long-minutes 60]

1. Stage 1 (decode -> resample -> 2 s chunks -> log-mel -> serialised examples) on
   DirectRunner, multi-processing, N workers, over birdclef-mini + nonbird + 3 hours
   of 44.1 kHz FLAC (field recordings come by the hour), beside the same feature
   chain (the same DoFn) as a plain Python loop, in the same run. Both are measured
   from a cold start, as a user runs them: the loop in a fresh Python process (its
   imports of TF and birdclef included), Beam including its workers' start-up. The
   loop is also timed warm (in this process, imports done) for reference. Prints
   audio-seconds per CPU-second for both, the Beam run per core (wall time x
   workers), and the ratios. Targets: Beam per core >= 0.7 of the plain loop;
   >= 300 audio-s per CPU-s. Beam's fixed start-up (~6-8 CPU-s per worker, mostly
   importing TensorFlow and Beam) is printed separately, with the corpus size from
   which the per-CPU target holds at the measured steady rate.
   DirectRunner with 2 workers runs in two ways, both measured from a cold start: worker
   processes (multi_processing, the run above) and worker threads in one process (in_memory,
   in a fresh process, its imports of Beam and TF included). The bench names the one
   `birdclef transform` picks here for this corpus (`runner.stage1_args`). The threads' fixed cost is
   measured on 2 tiny recordings too, with the corpus size from which they reach 0.7 of the warm loop
   per core at the steady rate (fixed costs weigh less as the corpus grows; `--extra-minutes`).
2. Peak memory (max RSS) of stage 1 on one long recording (default 60 min), in a
   fresh process. Target: < 2 GB.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent


def item(path: str) -> dict:
    """A stage 1 element as `stage1_chunks.work_items` makes it (duration from the header)."""
    from birdclef import audio

    return {"kind": "recording", "recording_id": path, "label": "x", "secondary": [], "split": "train",
            "path": path, "seconds": audio.duration(path)}


def items_from(data: Path) -> list[dict]:
    from birdclef import fileio

    return [item(p) for root in (data / "birdclef-mini" / "train_short_audio", data / "nonbird")
            for p in fileio.list_files(str(root), (".ogg",))]


def audio_seconds(items) -> float:
    return sum(i["seconds"] for i in items)


PLAIN_CHILD = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
from birdclef.pipeline.stage1_chunks import ChunkRecording
from birdclef.features import import_tensorflow
import_tensorflow(one_core=True)  # as each Beam worker process
fn = ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES); fn.setup()
print(sum(1 for i in json.load(open(sys.argv[1])) for _ in fn.process(i)))
"""


THREADS_CHILD = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
from birdclef.pipeline import runner, stage1_chunks
items = json.load(open(sys.argv[1]))
with runner.make_pipeline(["--direct_running_mode=in_memory", "--direct_num_workers=" + sys.argv[3]]) as p:
    stage1_chunks.build(p, items, sys.argv[2], DEFAULT_AUDIO, DEFAULT_FEATURES)
import resource
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
"""


def _cold(items, tmp: str, code: str, *args: str):
    """Run `code` over the items in a fresh process: CPU-s and wall including interpreter start and imports."""
    import json

    path = os.path.join(tmp, "items.json")
    with open(path, "w") as f:
        json.dump(items, f)
    r0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, path, *args], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - w0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, wall, out.stdout.strip().splitlines()[-1]


def plain_loop_cold(items, tmp: str):
    cpu, wall, n = _cold(items, tmp, PLAIN_CHILD)
    return cpu, wall, int(n)


def threads_cold(items, tmp: str, workers: int):
    """Stage 1 on DirectRunner in-memory with `workers` threads, from a cold start (a fresh process)."""
    out = os.path.join(tmp, "threads")
    try:
        return _cold(items, tmp, THREADS_CHILD, out, str(workers))
    finally:
        drop(out)


def drop(out: str) -> None:
    """Delete a run's output (~1.2 GB) at once, before the disk writes it back while the next run is timed."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)


def plain_loop(items):
    from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
    from birdclef.pipeline.stage1_chunks import ChunkRecording

    fn = ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES)
    fn.setup()
    t0, w0 = time.process_time(), time.perf_counter()
    n = sum(1 for i in items for _ in fn.process(i))
    return time.process_time() - t0, time.perf_counter() - w0, n


def beam_run(items, workers: int, out: str):
    from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
    from birdclef.pipeline import runner, stage1_chunks

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    with runner.make_pipeline(["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]) as p:
        stage1_chunks.build(p, items, out, DEFAULT_AUDIO, DEFAULT_FEATURES)
    wall = time.perf_counter() - w0
    drop(out)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s1 = resource.getrusage(resource.RUSAGE_SELF)
    workers = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    runner_cpu = s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime
    return workers + runner_cpu, wall, runner_cpu


MEMORY_CHILD = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
from birdclef.pipeline.stage1_chunks import ChunkRecording
from birdclef.features import import_tensorflow
import_tensorflow(one_core=True)  # as each Beam worker process
fn = ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES); fn.setup()
n = sum(1 for _ in fn.process({"kind": "recording", "recording_id": "long", "label": "x", "secondary": [],
                               "split": "train", "path": sys.argv[1]}))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def long_recording(path: str, minutes: float, seed: int = 0) -> None:
    import numpy as np
    import soundfile as sf

    sr = 44100  # not 32 kHz, so resampling is part of it
    rng = np.random.default_rng(seed)
    t = np.arange(sr * 60) / sr
    tone = (0.2 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC") as f:
        for _ in range(int(minutes)):
            f.write(tone + (0.02 * rng.standard_normal(len(t))).astype(np.float32))


def per_core_break_even(secs: float, wall: float, wall_fixed: float, workers: int, loop_rate: float) -> str:
    """From how much audio a run reaches 0.7 of the plain loop per core, at the steady rate measured.

    A run takes wall_fixed + secs / (workers * steady); per core that is >= 0.7 * loop_rate from
    secs >= 0.7 * loop_rate * workers * wall_fixed / (1 - 0.7 * loop_rate / steady)."""
    steady = secs / ((wall - wall_fixed) * workers)
    text = f"less fixed cost {steady:.0f} audio-s per core-s, {steady / loop_rate:.3f} of the warm loop"
    if steady <= 0.7 * loop_rate:
        return text
    need = 0.7 * loop_rate * workers * wall_fixed / (1 - 0.7 * loop_rate / steady)
    return text + f"; per core >= 0.7 of the warm loop from {need / 3600:.1f} h of audio per run"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--long-minutes", type=float, default=60)
    ap.add_argument("--extra-minutes", type=int, default=180,
                    help="add this many minutes of 4-min 44.1 kHz FLAC recordings, so that worker start-up "
                         "does not dominate (default %(default)s)")
    args = ap.parse_args()
    from birdclef.features import import_tensorflow

    import_tensorflow(one_core=True)  # the warm plain loop below runs as each Beam worker process
    items = items_from(Path(args.data))
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.extra_minutes // 4):
            path = os.path.join(tmp, f"extra{k}.flac")
            long_recording(path, 4, seed=k + 1)
            items.append(item(path))
        secs = audio_seconds(items)
        print(f"{len(items)} recordings, {secs:.0f} audio-s; cpus: {os.cpu_count()}")
        cpu_0, wall_0, self_0 = beam_run(items[:2], args.workers, os.path.join(tmp, "warm"))
        print(f"Beam fixed cost (2 tiny recordings): {wall_0:.1f} s wall, {cpu_0:.1f} CPU-s "
              f"(runner process {self_0:.1f}, {args.workers} workers {cpu_0 - self_0:.1f})")
        cpu_b, wall_b, self_b = beam_run(items, args.workers, os.path.join(tmp, "chunks"))
        print(f"Beam full run: runner process {self_b:.1f} CPU-s, workers {cpu_b - self_b:.1f} CPU-s")
        cpu_p, wall_p, n = plain_loop(items)
        cpu_c, wall_c, n_c = plain_loop_cold(items, tmp)
        assert n_c == n, (n_c, n)
        warm_rate, cold_rate = secs / cpu_p, secs / cpu_c
        beam_cpu_rate = secs / cpu_b
        beam_core_rate = secs / (wall_b * args.workers)
        print(f"plain loop, warm (in this process):  {warm_rate:7.1f} audio-s per CPU-s ({n} chunks, {wall_p:.1f} s wall)")
        print(f"plain loop, cold (fresh process):    {cold_rate:7.1f} audio-s per CPU-s ({wall_c:.1f} s wall)")
        print(f"Beam DirectRunner x{args.workers} processes, cold: {beam_cpu_rate:7.1f} audio-s per CPU-s "
              f"({wall_b:.1f} s wall)")
        print(f"Beam per core (wall x workers):      {beam_core_rate:7.1f} audio-s per core-s")
        steady = secs / ((wall_b - wall_0) * args.workers)
        print(f"Beam per core, less fixed cost:      {steady:7.1f} audio-s per core-s "
              f"(ratio to warm loop {steady / warm_rate:.3f})")
        print(f"Beam per CPU-s, less fixed cost:     {secs / (cpu_b - cpu_0):7.1f} audio-s per CPU-s")
        print(f"processes: ratio Beam per core / cold plain loop: {beam_core_rate / cold_rate:.3f} (target >= 0.7); "
              f"to warm loop {beam_core_rate / warm_rate:.3f}")
        print(f"processes: Beam audio-s per CPU-s: {beam_cpu_rate:.0f} (target >= 300)")
        cpu_t, wall_t, rss_t = threads_cold(items, tmp, args.workers)
        threads_core = secs / (wall_t * args.workers)
        print(f"Beam DirectRunner x{args.workers} threads (in_memory), cold: {secs / cpu_t:7.1f} audio-s per CPU-s "
              f"(target >= 300; {wall_t:.1f} s wall, {rss_t}); per core {threads_core:.1f} audio-s per core-s, "
              f"ratio to cold plain loop {threads_core / cold_rate:.3f} (target >= 0.7)")
        _, wall_t0, _ = threads_cold(items[:2], tmp, args.workers)
        print(f"  threads' fixed cost (2 tiny recordings, cold): {wall_t0:.1f} s wall "
              f"(Beam and TF imports, pipeline start, sinks, exit); "
              f"{per_core_break_even(secs, wall_t, wall_t0, args.workers, warm_rate)}")
        from birdclef.pipeline import runner

        print(f"`birdclef transform` picks here for this corpus: {runner.stage1_args([], secs)[1]}")
        steady_cpu = secs / (cpu_b - cpu_0)
        if steady_cpu > 300:  # fixed + secs / steady <= secs / 300
            hours = cpu_0 / (1 / 300 - 1 / steady_cpu) / 3600
            print(f"  at this steady rate, >= 300 audio-s per CPU-s from {hours:.1f} h of audio per run "
                  f"(this corpus: {secs / 3600:.1f} h)")

        path = os.path.join(tmp, "long.flac")
        long_recording(path, args.long_minutes)
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, path], capture_output=True, text=True, check=True)
        n_long, rss = out.stdout.split()
        print(f"{args.long_minutes:.0f}-min 44.1 kHz recording: {n_long} chunks, peak RSS {float(rss):.0f} MB "
              f"(target < 2048 MB)")


if __name__ == "__main__":
    main()
