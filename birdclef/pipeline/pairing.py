"""Pairing (single process, no audio): anchor chunk i -> positive and negative chunks.

From `train_metadata_pos_neg.csv` (recordings) and stage 1's chunk counts,
each chunk i of an anchor recording gets chunk i of the concatenation of its
positive recordings' chunks (and likewise for negatives), wrapping around when
that side has fewer chunks. An anchor that is its own positive (alone in its
label and split) pairs chunk i with its chunk i+1 (mod n). Recordings that
stage 1 quarantined are dropped from the lists; an anchor left without
negatives gives no triples and is reported.

Output: triples.jsonl, one JSON object per line:
  {"id", "split", "anchor": [id, chunk], "positive": [id, chunk], "negative": [id, chunk]}
"""
from __future__ import annotations

import io
import json

import pandas as pd

from birdclef import fileio
from birdclef.data.pairs import SEP


def read_counts(chunks_dir: str) -> dict[str, int]:
    return {c["recording_id"]: int(c["n_chunks"])
            for c in fileio.read_jsonl(fileio.join(chunks_dir, "counts*.jsonl"))}


def build_triples(pos_neg: pd.DataFrame, counts: dict[str, int]) -> tuple[list[dict], list[str]]:
    triples, problems = [], []
    for r in pos_neg.itertuples(index=False):
        a = r.anchor_id
        if a not in counts:
            continue  # quarantined in stage 1: accounted for in the manifest
        n_a = counts[a]
        pos = [p for p in str(r.positive_ids).split(SEP) if p and p != a and p in counts]
        neg = [q for q in str(r.negative_ids).split(SEP) if q and q in counts]
        if not neg:
            problems.append(f"{a}: no usable negative recording left in split {r.split}; no triples for it")
            continue
        neg_seq = [(q, j) for q in neg for j in range(counts[q])]
        if pos:
            pos_seq = [(p, j) for p in pos for j in range(counts[p])]
            pos_of = lambda i: pos_seq[i % len(pos_seq)]  # noqa: E731
        else:
            pos_of = lambda i: (a, (i + 1) % n_a)  # noqa: E731
        for i in range(n_a):
            triples.append({"id": len(triples), "split": r.split, "anchor": [a, i], "positive": list(pos_of(i)),
                            "negative": list(neg_seq[i % len(neg_seq)])})
    return triples, problems


def run(pre_dir: str, chunks_dir: str, out_dir: str) -> dict:
    pos_neg = pd.read_csv(io.StringIO(fileio.read_text(fileio.join(pre_dir, "train_metadata_pos_neg.csv"))),
                          dtype={"positive_ids": str, "negative_ids": str}, keep_default_na=False)
    counts = read_counts(chunks_dir)
    triples, problems = build_triples(pos_neg, counts)
    fileio.write_text(fileio.join(out_dir, "triples.jsonl"), "".join(json.dumps(t) + "\n" for t in triples))
    per_split = pd.Series([t["split"] for t in triples], dtype=str).value_counts().to_dict()
    return {"triples": len(triples), "per_split": per_split, "problems": problems}
