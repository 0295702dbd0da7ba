"""Few-shot classifiers on a model's embeddings against the fully trained model, on held-out recordings.

    python bench/fewshot.py --ckpt-dir C --work W [--shots 1 5 10] [--seeds 0 1 2]

W is a work dir `birdclef preprocess` made for birdclef-plus (bench/quality.py's WORK/work), C a model
trained on it (e.g. WORK/default-s0). Every bird recording of the train and test splits goes through the
model; each 2 s chunk that speaks for its audio (predict's padding rule) gives an embedding and class
scores. For n in --shots and each seed, n chunks per species are drawn from the train split, the
classifier of `birdclef classify` (one-vs-rest logistic regression, `birdclef.classify.fit`) is fitted
on their embeddings, and its top-1 over the species is measured on every test-split bird chunk, beside
the trained model's own top-1 (its class head, birds only) on the same chunks. Mean and range over seeds.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from birdclef import audio, classify, fileio, predict  # noqa: E402
from birdclef.config import NOCALL  # noqa: E402


def chunks(serve, path: str):
    wave = audio.load(path, allow_silent=True)
    out = serve(waveform=wave)
    _, _, use, _ = predict.speaking_chunks(out, len(wave), len(wave))
    return predict.as_numpy(out["embedding"])[use], predict.as_numpy(out["scores"])[use]


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    serve, classes, _ = predict.load_model(args.ckpt_dir)
    rec = pd.read_csv(io.StringIO(fileio.read_text(f"{args.work}/preprocess/recordings.csv")), dtype=str)
    rec = rec[(rec.label != NOCALL) & rec.split.isin(["train", "test"])]
    birds = [c for c in classes if c != NOCALL]
    emb, score, label, split = [], [], [], []
    for r in rec.itertuples(index=False):
        e, s = chunks(serve, r.path)
        emb.append(e)
        score.append(s)
        label += [r.label] * len(e)
        split += [r.split] * len(e)
    emb, score = np.concatenate(emb), np.concatenate(score)
    label, split = np.asarray(label), np.asarray(split)
    test = split == "test"
    idx = [classes.index(b) for b in birds]
    full = float((np.asarray(birds)[score[test][:, idx].argmax(1)] == label[test]).mean())
    print(f"{test.sum()} test bird chunks of {len(set(label[test]))} species; {(~test).sum()} train chunks")
    print("\n| classifier | labelled chunks per species | bird top-1 (test) |")
    print("|---|---|---|")
    print(f"| trained model's class head | all ({(~test).sum()} chunks) | {full:.3f} |")
    for n in args.shots:
        accs = []
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            pick = []
            for b in sorted(set(label[~test])):
                pool = np.flatnonzero((~test) & (label == b))
                pick += list(rng.choice(pool, min(n, len(pool)), replace=False))
            pick = np.asarray(pick)
            cls, w, bias = classify.fit(emb[pick], list(label[pick]), seed)
            pred = np.asarray(cls)[(emb[test] @ w.T + bias).argmax(1)]
            accs.append(float((pred == label[test]).mean()))
        a = np.asarray(accs)
        print(f"| few-shot logistic regression | {n} | {a.mean():.3f} ({a.min():.3f}-{a.max():.3f}, "
              f"{len(a)} draws) |")


if __name__ == "__main__":
    main()
