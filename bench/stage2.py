"""Transform stage 2 (TF Transform + triple join): DirectRunner running modes side by side.

    python bench/stage2.py [--species 10 --recordings-per-species 40]

Runs preprocess, stage 1 and pairing once on a synthetic dataset (default
10 species x 40 recordings, ~2000 chunks and ~2000 triples), then stage 2
twice on the same chunks in the same run: in-memory (birdclef's default for
stage 2) and multi-processing with one worker per core. Prints chunks (+ their
triples) per second for both and the ratio, and checks both wrote the same
number of records. Stage 2 is bound by moving 100 KB mels between
transforms; multi-processing sends each one through gRPC to the runner process.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def count_records(pattern: str) -> int:
    import tensorflow as tf

    return sum(1 for f in glob.glob(pattern) for _ in tf.data.TFRecordDataset(f))


def stage2(work: str, beam_args: list[str]) -> tuple[float, dict]:
    from birdclef import transform

    tft = os.path.join(work, "transform", "tft")
    if os.path.exists(tft):
        import shutil

        shutil.rmtree(tft)
    lines = []
    transform.run(work, beam_args, log=lines.append)
    took = float(next(re.search(r"stage 2 took ([\d.]+) s", line).group(1) for line in lines
                      if "stage 2 took" in line))
    counts = {kind: count_records(os.path.join(tft, "*", f"{kind}-*.tfrecord")) for kind in ("chunks", "triples")}
    return took, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--species", type=int, default=10)
    ap.add_argument("--recordings-per-species", type=int, default=40)
    args = ap.parse_args()
    from birdclef import preprocess, transform
    from birdclef.data import synth

    with tempfile.TemporaryDirectory() as tmp:
        data, work = os.path.join(tmp, "data"), os.path.join(tmp, "work")
        synth.generate(data, synth.SynthConfig(species=args.species,
                                               recordings_per_species=args.recordings_per_species))
        preprocess.run(work, preprocess.PreprocessConfig(data_dir=data), log=lambda *a: None)
        transform.run(work, log=lambda *a: None)  # stage 1 and pairing once; stage 2 is redone below
        cores = os.cpu_count() or 1
        mem, c_mem = stage2(work, [])
        mp, c_mp = stage2(work, ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"])
        assert c_mem == c_mp, (c_mem, c_mp)
        n = c_mem["chunks"]
        print(f"stage 2 on {n} chunks and {c_mem['triples']} triples, {cores} cores")
        print(f"in-memory (default):          {mem:6.1f} s  {n / mem:6.1f} chunks/s")
        print(f"multi-processing x{cores}:        {mp:6.1f} s  {n / mp:6.1f} chunks/s")
        print(f"ratio in-memory / multi-processing: {mp / mem:.2f}")


if __name__ == "__main__":
    main()
