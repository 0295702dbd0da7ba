"""`birdclef compare`: the test-split metrics of several trained models side by side."""
from __future__ import annotations

import json

from birdclef import fileio

COLUMNS = [("model", "model"), ("loss", "loss"), ("params", "params"), ("epochs", "epochs_trained"),
           ("k-NN top-1", "knn_top1"), ("k-NN birds", "knn_top1_birds"), ("k-NN balanced", "knn_balanced"),
           ("clf top-1", "classifier_top1"), ("clf balanced", "classifier_balanced"),
           ("chance", "chance_uniform"), ("majority", "chance_majority"), ("test chunks", "chunks")]


def rows(ckpt_dirs: list[str]) -> tuple[list[dict], list[str]]:
    out, problems = [], []
    for d in ckpt_dirs:
        p = fileio.join(d, "metrics.json")
        if not fileio.exists(p):
            problems.append(f"{d}: no metrics.json; fix: finish `birdclef train --ckpt_dir {d}` first")
            continue
        m = json.loads(fileio.read_text(p))
        flat = {**m, **m.get("test", {}), "ckpt_dir": d}
        out.append({title: flat.get(key, "") for title, key in COLUMNS} | {"ckpt_dir": d})
    return out, problems


def markdown(table: list[dict]) -> str:
    heads = [t for t, _ in COLUMNS]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(fmt(r[h]) for h in heads) + " |" for r in table]
    return "\n".join(lines)
