"""Training throughput.

    python bench/train.py [--steps 30] [--batch_size 64] [--models dilated_cnn,resnet,mobilenet,crnn]

1. Examples per second of a bare training step (batch_hard+classify loss, XLA
   jit_compile) on in-memory tensors, for each architecture at batch 64.
2. For the dilated CNN, the full `birdclef train` input pipeline (TFRecords ->
   parse -> cache -> class-balanced sampling -> batch -> prefetch) plus the same
   step, on a synthetic dataset taken through preprocess and transform in this
   run, and its ratio to the bare step (target >= 0.9: input never the
   bottleneck). Target for the dilated CNN: >= 110 examples/s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def timed_steps(step, batches, steps: int, warmup: int = 3) -> float:
    """Examples per second over `steps` steps after `warmup` (compile) steps."""
    it = iter(batches)
    for _ in range(warmup):
        x, y = next(it)
        float(step(x, y))
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, y = next(it)
        loss = step(x, y)
        n += int(y.shape[0])
    float(loss)
    return n / (time.perf_counter() - t0)


def bare(name: str, batch: int, steps: int, n_classes: int = 7) -> float:
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from birdclef import features, models, train

    shape = features.mel_shape()
    model = models.build(name, shape, 128, n_classes)
    cfg = train.TrainConfig(data_path="", ckpt_dir="", batch_size=batch)
    step = train.make_train_step(model, keras.optimizers.Adam(1e-3), cfg)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, *shape)).astype(np.float32))
    y = tf.constant(np.arange(batch) % n_classes, tf.int64)

    def forever():
        while True:
            yield x, y

    return timed_steps(step, forever(), steps)


def full_pipeline(batch: int, steps: int, tmp: str) -> float:
    import tf_keras as keras

    from birdclef import features, models, preprocess, train, transform
    from birdclef.data import synth

    data = os.path.join(tmp, "data")
    synth.generate(data, synth.SynthConfig())
    work = os.path.join(tmp, "work")
    preprocess.run(work, preprocess.PreprocessConfig(data_dir=data, nonbird_dirs=(f"{data}/nonbird",)),
                   log=lambda s: None)
    transform.run(work, None, log=lambda s: None)
    cfg = train.TrainConfig(data_path=work, ckpt_dir=os.path.join(tmp, "ck"), batch_size=batch)
    d = train.Data(cfg)
    ds, _ = d.train_dataset()
    for _ in ds.take(1):  # build the pipeline and open the files once, before timing
        pass
    d.count("train", "chunks")
    model = models.build("dilated_cnn", features.mel_shape(), 128, len(d.classes))
    step = train.make_train_step(model, keras.optimizers.Adam(1e-3), cfg)
    return timed_steps(step, ds, steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--models", default="dilated_cnn,resnet,mobilenet,crnn")
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, batch {args.batch_size}, {args.steps} timed steps after 3 warm-up steps")
    rates = {}
    for name in args.models.split(","):
        rates[name] = bare(name, args.batch_size, args.steps)
        print(f"  {name:12s} bare step: {rates[name]:7.1f} examples/s")
    with tempfile.TemporaryDirectory() as tmp:
        full = full_pipeline(args.batch_size, args.steps, tmp)
    ref = rates.get("dilated_cnn") or bare("dilated_cnn", args.batch_size, args.steps)
    print(f"dilated_cnn full input pipeline + step: {full:7.1f} examples/s")
    print(f"ratio full/bare: {full / ref:.3f} (target >= 0.9); dilated_cnn bare {ref:.1f} examples/s (target >= 110)")


if __name__ == "__main__":
    main()
