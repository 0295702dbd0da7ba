"""Every architecture trained and evaluated on real recordings, side by side.

    python bench/architectures.py [--data ../shared/data] [--work-dir /tmp/birdclef-arch] [--epochs 20]
                                  [--models dilated_cnn,resnet,mobilenet] [--loss batch_hard+classify]

Takes `DATA/birdclef-mini` (15 bird labels, 98 recordings) plus `DATA/nonbird` (non-bird
audio, label `nocall`) through preprocess and transform once, trains each model with the
same data, loss, seed and epochs, evaluates each exported model (`birdclef evaluate`) and
prints the `birdclef compare` table, with the chance levels and the always-nocall floor
as the references of the same run. Each stage resumes, so a rerun only adds what is
missing. The labelled soundscapes of this data hold species that are not in its
train_short_audio, so their row-wise F1 can credit `nocall` windows only
(`birds_not_in_classes`): read mAP, accuracy and the per-class tables for the birds.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "birdclef-arch"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    # crnn is left out by default: ~5 examples/s on 2 CPU cores, ~35 min for 20 epochs here (add it by name)
    ap.add_argument("--models", default="dilated_cnn,resnet,mobilenet")
    ap.add_argument("--loss", default="batch_hard+classify")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from birdclef import compare, evaluate, preprocess, train, transform

    data, work = Path(args.data), args.work_dir
    t0 = time.time()
    preprocess.run(work, preprocess.PreprocessConfig(data_dir=str(data / "birdclef-mini"),
                                                     nonbird_dirs=(str(data / "nonbird"),), seed=args.seed),
                   log=lambda s: None)
    tm = transform.run(work, log=lambda s: None)
    print(f"data: {tm['processed']} recordings decoded, chunks per split {tm['chunks_per_split']} "
          f"({time.time() - t0:.0f} s)")
    ckpts = []
    for name in args.models.split(","):
        ckpt = os.path.join(work, "models", f"{name}-{args.loss}")
        t1 = time.time()
        m = train.run(train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=args.batch_size,
                                        epochs=args.epochs, model=name, loss=args.loss, seed=args.seed),
                      log=lambda s: None)
        evaluate.run(work, ckpt, log=lambda s: None)
        print(f"{name}: {m['epochs_trained']} epochs, trained and evaluated in {time.time() - t1:.0f} s")
        ckpts.append(ckpt)
    table, problems = compare.rows(ckpts)
    print("\n".join(problems))
    md = compare.markdown(table)
    print(md)
    with open(os.path.join(work, "compare.md"), "w") as f:
        f.write(md + "\n")
    print(f"\nper-model reports: {os.path.join(work, 'models', '*', 'report', 'report.md')}; "
          f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
