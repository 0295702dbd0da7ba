"""ONNX Runtime against OpenVINO on the same exported model and the same inputs (issue 14: the runtime
`predict` uses is chosen by measurement).

    python bench/runtimes.py --model C/model.onnx [--seconds 120] [--runs 7]

Takes `seconds` of the shared soundscapes (repeated), makes the STFT power of its 2 s chunks once
(`birdclef.onnx_model.chunk_power`, outside both runtimes), then times batches of 64 chunks through
ONNX Runtime (as `predict` runs it: intra-op threads = cores) and OpenVINO's CPU plugin, at float32
inference precision and at the plugin's default (bfloat16 on CPUs with AMX or AVX512-BF16), interleaved,
medians of --runs. Prints each one's time, its ratio to ONNX Runtime and its largest score difference
from it (predict's bound against the SavedModel is 1e-3). OpenVINO is not a dependency:
`pip install openvino` to run this.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("BIRDCLEF_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an ONNX file of `birdclef export`")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import onnxruntime as ort

    from birdclef import audio, features, onnx_model

    parts = [audio.load(p) for p in sorted(glob.glob(str(SHARED / "birdclef-plus" / "train_soundscapes" / "*.ogg")))]
    n = int(args.seconds * 32000)
    wave = np.tile(np.concatenate(parts), n // sum(map(len, parts)) + 1)[:n]
    power = onnx_model.chunk_power(wave, features.chunk_starts(len(wave)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    runners = {"onnxruntime": lambda x: dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))}
    try:
        import openvino as ov
    except ImportError:
        print("openvino not installed (pip install openvino): only ONNX Runtime measured")
    else:
        core = ov.Core()
        for label, cfg in (("openvino f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("openvino default precision", {})):
            compiled = core.compile_model(args.model, "CPU", {"PERFORMANCE_HINT": "LATENCY", **cfg})
            req = compiled.create_infer_request()

            def run(x, req=req, compiled=compiled):
                out = req.infer({0: x})
                return {o.get_any_name(): out[o] for o in compiled.outputs}
            runners[label] = run
    batches = [power[i:i + 64] for i in range(0, len(power), 64)]
    ref = [runners["onnxruntime"](b) for b in batches]
    times = {k: [] for k in runners}
    for _ in range(args.runs):
        for name, fn in runners.items():  # interleaved
            t = time.perf_counter()
            for b in batches:
                fn(b)
            times[name].append(time.perf_counter() - t)
    base = float(np.median(times["onnxruntime"]))
    print(f"{args.seconds:g} s of audio, {len(power)} chunks in batches of 64, {os.cpu_count()} cores, medians of {args.runs}")
    for name, fn in runners.items():
        got = [fn(b) for b in batches]
        diff = max(float(np.abs(g[k] - r[k]).max()) for g, r in zip(got, ref) for k in ("scores", "bird"))
        med = float(np.median(times[name]))
        print(f"  {name:28s} {med * 1000:7.1f} ms  ratio to onnxruntime {med / base:.3f}  "
              f"largest score difference {diff:.1e}")


if __name__ == "__main__":
    main()
