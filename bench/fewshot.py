"""Few-shot classifiers on a model's embeddings against the fully trained model, on held-out recordings.

    python bench/fewshot.py --ckpt-dir C --work W [--shots 1 5 10] [--seeds 0 1 2]

W is a work dir `birdclef preprocess` made for birdclef-plus (bench/quality.py's WORK/work), C a model
trained on it (e.g. WORK/default-s0). Every bird recording of the train and test splits goes through the
model; each 2 s chunk that speaks for its audio (predict's padding rule) gives an embedding and class
scores. For n in --shots and each seed, n chunks per species are drawn from the train split, the
classifier of `birdclef classify` (one-vs-rest logistic regression, `birdclef.classify.fit`) is fitted
on their embeddings, and its top-1 over the species is measured on every test-split bird chunk, beside
the trained model's own top-1 (its class head, birds only) on the same chunks. Mean and range over seeds.

Search by example (`birdclef search` ranks by cosine similarity): for each seed and each species with test
chunks, one train chunk of it is the query and every test bird chunk is ranked; precision@10 (the share of
the 10 nearest that are the query's species: capped below 1 for species with fewer than 10 test chunks),
R-precision (the share right among the first R, R the species' test chunks) and average precision over the
ranking, against what a random ranking gives (the species' share of the test chunks). Mean over species,
then range over seeds.
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
    search_by_example(emb, label, test, args.seeds)


def search_by_example(emb: np.ndarray, label: np.ndarray, test: np.ndarray, seeds: list[int], k: int = 10) -> None:
    from sklearn.metrics import average_precision_score

    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    species = sorted(set(label[test]) & set(label[~test]))
    p_at, r_prec, ap = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        ps, rs, aps = [], [], []
        for b in species:
            q = unit[rng.choice(np.flatnonzero((~test) & (label == b)))]
            sim = unit[test] @ q
            hit = label[test] == b
            order = np.argsort(-sim)
            ps.append(hit[order[:k]].mean())
            rs.append(hit[order[:hit.sum()]].mean())
            aps.append(average_precision_score(hit, sim))
        p_at.append(np.mean(ps))
        r_prec.append(np.mean(rs))
        ap.append(np.mean(aps))
    chance = np.mean([(label[test] == b).mean() for b in species])
    p_at, r_prec, ap = np.asarray(p_at), np.asarray(r_prec), np.asarray(ap)
    print(f"\nsearch by example: one train chunk per species as the query, {test.sum()} test bird chunks ranked, "
          f"{len(species)} species, {len(seeds)} draws")
    print(f"| precision@{k} | R-precision | average precision | random ranking |")
    print("|---|---|---|---|")
    print(" | ".join(["", *(f"{a.mean():.3f} ({a.min():.3f}-{a.max():.3f})" for a in (p_at, r_prec, ap)),
                      f"{chance:.3f}", ""]).strip())


if __name__ == "__main__":
    main()
