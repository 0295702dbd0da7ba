"""`birdclef compare`: the test-split metrics of several trained models side by side.

Training's metrics.json (k-NN and classifier accuracy on normalised test chunks)
and, where `birdclef evaluate` ran, evaluation.json (mAP, BirdCLEF row-wise F1,
detection precision/recall, measured through the exported model)."""
from __future__ import annotations

import json

from birdclef import classify, fileio

COLUMNS = [("model", "model"), ("loss", "loss"), ("params", "params"), ("epochs", "epochs_trained"),
           ("k-NN top-1", "knn_top1"), ("k-NN birds", "knn_top1_birds"), ("k-NN balanced", "knn_balanced"),
           ("clf top-1", "classifier_top1"), ("clf balanced", "classifier_balanced"),
           ("mAP", "mAP"), ("row F1", "row_f1"), ("row F1 all-nocall", "row_f1_all_nocall"),
           ("det. precision", "detection_precision"), ("det. recall", "detection_recall"),
           ("weakest class (AP)", "weakest_class"), ("val threshold", "val_threshold_value"),
           ("row F1 at val threshold", "row_f1_at_val_threshold"),
           ("chance", "chance_uniform"), ("majority", "chance_majority"), ("test chunks", "chunks"),
           ("windows", "soundscape_windows")]


EVALUATION_KEYS = {"mAP", "row_f1", "row_f1_all_nocall", "detection_precision", "detection_recall",
                   "soundscape_windows"}


def _weakest(per_class: list[dict]) -> str:
    """'<class> <AP>' of the class with the lowest test-chunk AP ('' before `evaluate` wrote per_class)."""
    scored = [c for c in per_class if c.get("AP") is not None]
    if not scored:
        return ""
    worst = min(scored, key=lambda c: c["AP"])
    return f"{worst['class']} {worst['AP']:.3f}"


def rows(ckpt_dirs: list[str]) -> tuple[list[dict], list[str]]:
    out, problems = [], []
    for d in ckpt_dirs:
        p = fileio.join(d, "metrics.json")
        if fileio.exists(p):
            m = json.loads(fileio.read_text(p))
        elif classify.is_classifier(d):  # `birdclef classify`: no training metrics, its evaluation only
            m = {"model": "linear classifier", "loss": "few-shot (classify)"}
        else:
            problems.append(f"{d}: no metrics.json; fix: finish `birdclef train --ckpt-dir {d}` first")
            continue
        ev = fileio.join(d, "evaluation.json")
        evaluation = json.loads(fileio.read_text(ev)) if fileio.exists(ev) else {}
        flat = {**m, **m.get("test", {}), **{k: v for k, v in evaluation.items() if k in EVALUATION_KEYS},
                "val_threshold_value": evaluation.get("val_threshold", {}).get("threshold"),
                "row_f1_at_val_threshold": evaluation.get("at_val_threshold", {}).get("row_f1"),
                "weakest_class": _weakest(evaluation.get("per_class", [])),
                "ckpt_dir": d}
        out.append({title: flat.get(key, "") for title, key in COLUMNS} | {"ckpt_dir": d})
    return out, problems


def markdown(table: list[dict]) -> str:
    from birdclef.report import markdown_table

    return "\n".join(markdown_table(table, [t for t, _ in COLUMNS]))
