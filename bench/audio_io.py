"""Audio decode + resample throughput: birdclef.audio vs bare soundfile + soxr.

Prints audio-seconds per CPU-second for both on the same files in the same run,
and their ratio (target: birdclef >= 0.85 of bare).

    python bench/audio_io.py [--data ../shared/data] [--repeats 3]

The file set is every good recording in MANIFEST.tsv plus the awkward readable
ones (48 kHz stereo 24-bit, unsigned 8-bit), so resampling and downmixing are
exercised, not only 32 kHz mono.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from birdclef import audio

HERE = Path(__file__).resolve().parent


def bare(path: str, sr: int = 32000) -> np.ndarray:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return soxr.resample(x, rate, sr) if rate != sr else x


def ours(path: str) -> np.ndarray:
    return audio.load(path)


def measure(fns, files, repeats):
    """Best CPU time of each function over `repeats` rounds, alternating them
    within a round so machine noise hits both alike."""
    best = {fn: float("inf") for fn in fns}
    secs = {}
    for _ in range(repeats):
        for fn in fns:
            t0 = time.process_time()
            secs[fn] = sum(len(fn(f)) for f in files) / 32000
            best[fn] = min(best[fn], time.process_time() - t0)
    return {fn: (secs[fn], best[fn]) for fn in fns}


def long_file(tmp: str, minutes: float = 10.0) -> str:
    """A long 44.1 kHz stereo FLAC, so the block-streaming path is measured too."""
    path = os.path.join(tmp, "long.flac")
    sr = 44100
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 2, format="FLAC") as f:
        for _ in range(int(minutes * 6)):
            f.write((0.1 * rng.standard_normal((sr * 10, 2))).astype(np.float32))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = Path(args.data)
    files = [str(data / r["path"]) for r in csv.DictReader(open(data / "MANIFEST.tsv"), delimiter="\t")]
    files += [str(data / "corrupt" / n) for n in ("stereo_48k.wav", "pcm_u8.wav", "clipped_dc_offset.wav")]
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"shared/data recordings": files, "one 10-min 44.1 kHz stereo FLAC": [long_file(tmp)]}
        print(f"cpus: {os.cpu_count()}, repeats: {args.repeats}")
        for name, fs in sets.items():
            for fn in (bare, ours):  # warm the page cache and imports
                fn(fs[0])
            res = measure((bare, ours), fs, args.repeats)
            (s_bare, t_bare), (s_ours, t_ours) = res[bare], res[ours]
            r_bare, r_ours = s_bare / t_bare, s_ours / t_ours
            print(f"\n{name}: {len(fs)} file(s), {s_bare:.1f} audio-s")
            print(f"  bare soundfile.read + soxr.resample: {r_bare:8.1f} audio-s per CPU-s")
            print(f"  birdclef.audio.load:                 {r_ours:8.1f} audio-s per CPU-s")
            print(f"  ratio birdclef/bare: {r_ours / r_bare:.3f} (target >= 0.85)")


if __name__ == "__main__":
    main()
