"""Training throughput.

    python bench/train.py [--steps 30] [--batch-size 64] [--models dilated_cnn,resnet,mobilenet,crnn]

1. Examples per second of a bare training step (batch_hard+classify loss, XLA
   jit_compile) on in-memory tensors, for each architecture at batch 64.
2. For the dilated CNN, the full `birdclef train` input pipeline (TFRecords -> parse -> class-balanced
   sampling -> batch -> augmentation, all of it unless --augment says otherwise -> prefetch) plus the same step, and
   its ratio to the bare step (target >= 0.9: input never the bottleneck), on
   - the synthetic demo dataset, taken through preprocess and transform in this run;
   - ../shared/data/birdclef-plus + nonbird (31 labels, rarest class 5 chunks), when present;
   - the same chunks relabelled to a simulated 400-class long tail (Zipf counts, many classes of
     one chunk), as BirdCLEF's 397 species would be: plain rejection sampling would read the data
     ~10x per example there; `--max-reads` bounds it.
   Each line also prints the chunks read per example of the sampling plan.
   Target for the dilated CNN: >= 110 examples/s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

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
        n += int(x.shape[0])
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


SHARED = os.environ.get("BIRDCLEF_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def prepared(tmp: str, name: str) -> str | None:
    """A transform work dir for `name` (synthetic, or a folder of the shared data with nonbird)."""
    from birdclef import preprocess, transform
    from birdclef.data import synth

    if name == "synthetic":
        data = os.path.join(tmp, "data")
        synth.generate(data, synth.SynthConfig())
        nonbird = (f"{data}/nonbird",)
    else:
        data = os.path.join(SHARED, name)
        if not os.path.isdir(data):
            return None
        nonbird = (os.path.join(SHARED, "nonbird"),) if os.path.isdir(os.path.join(SHARED, "nonbird")) else ()
    work = os.path.join(tmp, f"work-{name}")
    preprocess.run(work, preprocess.PreprocessConfig(data_dir=data, nonbird_dirs=nonbird), log=lambda s: None)
    transform.run(work, None, log=lambda s: None)
    return work


def long_tail(n: int, classes: int = 400, power: float = 1.1) -> np.ndarray:
    """Chunks per class of a Zipf long tail over `classes` summing to n (at least one each)."""
    w = 1.0 / np.arange(1, classes + 1) ** power
    c = np.maximum(1, np.floor(w / w.sum() * (n - classes) + 1)).astype(np.int64)
    c[0] += n - c.sum()
    return c


class SimulatedTail:
    """Wraps train.Data: its chunk records read `repeat` times per pass, relabelled in a fixed pattern
    to `long_tail` over that many chunks (a data set `repeat` times larger with 400 species)."""

    def __init__(self, data, classes: int = 400, repeat: int = 10):
        import tensorflow as tf

        from birdclef.config import NOCALL

        self.data = data
        self.repeat = repeat
        n = int(data.class_counts("train").sum()) * repeat
        self.counts = np.r_[long_tail(n - n // 4, classes), n // 4]  # a quarter non-bird, class `nocall` last
        labels = np.repeat(np.arange(classes + 1), self.counts)
        np.random.default_rng(0).shuffle(labels)
        self.labels = tf.constant(labels)
        self.classes = [f"sp{i:03d}" for i in range(classes)] + [NOCALL]

    def patch(self):
        import tensorflow as tf

        d, labels, k = self.data, self.labels, len(self.classes)
        chunks = d.chunks
        d.classes = self.classes
        d.class_counts = lambda split: self.counts
        d.chunks = lambda split: chunks(split).repeat(self.repeat).enumerate().map(
            lambda i, e: (e[0], labels[i % len(labels)], tf.one_hot(labels[i % len(labels)], k)))
        return d


def full_pipeline(batch: int, steps: int, work: str, tmp: str, simulate: bool = False,
                  augment: str | None = None) -> tuple[float, float]:
    """(examples/s of the default train input pipeline + step, chunks read per example); augment: the
    `train --augment` value (None: the default)."""
    import tf_keras as keras

    from birdclef import features, models, train

    cfg = train.TrainConfig(data_path=work, ckpt_dir=os.path.join(tmp, "ck"), batch_size=batch,
                            **({} if augment is None else {"augment": augment}))
    d = train.Data(cfg)
    if simulate:
        d = SimulatedTail(d).patch()
    ds, _ = d.train_dataset()
    for _ in ds.take(1):  # build the pipeline and open the files once, before timing
        pass
    model = models.build("dilated_cnn", features.mel_shape(), 128, len(d.classes))
    step = train.make_train_step(model, keras.optimizers.Adam(1e-3), cfg, d.plan["weight"])
    return timed_steps(step, ds, steps), d.plan["reads"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--models", default="dilated_cnn,resnet,mobilenet,crnn")
    ap.add_argument("--augment", default="all", help="the input pipeline's `train --augment` (default all: every "
                    "augmentation on, the pipeline's heaviest; `train` itself defaults to shift,quiet)")
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, batch {args.batch_size}, {args.steps} timed steps after 3 warm-up steps, "
          f"--augment {args.augment}")
    rates = {}
    for name in args.models.split(","):
        rates[name] = bare(name, args.batch_size, args.steps)
        print(f"  {name:12s} bare step: {rates[name]:7.1f} examples/s")
    ref = rates.get("dilated_cnn") or bare("dilated_cnn", args.batch_size, args.steps)
    ref401 = bare("dilated_cnn", args.batch_size, args.steps, n_classes=401)
    print(f"dilated_cnn bare step: {ref:.1f} examples/s (target >= 110); with 401 classes {ref401:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, simulate in (("synthetic", False), ("birdclef-plus", False), ("birdclef-plus", True)):
            work = prepared(tmp, name)
            if work is None:
                print(f"  {name}: not found under {SHARED}, skipped")
                continue
            full, reads = full_pipeline(args.batch_size, args.steps, work, tmp, simulate, args.augment)
            base = ref401 if simulate else ref
            label = f"{name} relabelled to a 400-class long tail" if simulate else name
            print(f"  {label:45s} full pipeline + step {full:7.1f} examples/s, ratio to bare {full / base:.3f} "
                  f"(target >= 0.9), {reads:.2f} chunks read per example")


if __name__ == "__main__":
    main()
