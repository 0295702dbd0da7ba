"""Few-shot classifiers on labelled embeddings: `birdclef classify --db DB --out C2`.

The loop: `birdclef embed` recordings, find candidates with `birdclef search`, label windows in
`birdclef review`, then train here a linear classifier (one-vs-rest logistic regression, classes
weighted to balance) on the labelled window embeddings:

  positives of a label   windows whose newest label is that species code
  negatives              windows labelled with another code, or `not`; `unsure` windows are left out

The held-out check is a stratified k-fold cross-validation grouped by recording where the labels allow
it (k = min(5, fewest windows of a label)): every window is scored by a classifier that never saw it,
and the check reports accuracy (the best label, or `not` when no label reaches 0.5) and per label
recall and average precision.

C2 is a model directory for `birdclef predict --ckpt-dir C2` and `birdclef evaluate`:

  classifier.json  the base model (the embedding model of the database), its fingerprint, the labels,
                   the linear weights and biases, and the held-out check
  classes.json     the labels

Serving runs the base model and replaces its class scores with the classifier's sigmoid scores on each
2 s chunk's embedding; the base model's `bird` presence output is kept.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

import numpy as np
import pandas as pd

from birdclef import fileio

SPEC = "classifier.json"


class ClassifyError(Exception):
    pass


def is_classifier(model_path: str) -> bool:
    return not str(model_path).lower().endswith(".onnx") and fileio.exists(fileio.join(model_path, SPEC))


def labelled_windows(db: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(path, start_s, end_s, label per labelled window, their vectors [n, D]); newest label of a window,
    `unsure` left out."""
    if not os.path.exists(db):
        raise ClassifyError(f"--db {db} does not exist; fix: make it with `birdclef embed` and label windows "
                            "with `birdclef review`")
    con = sqlite3.connect(db)
    try:
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise ClassifyError(f"--db {db} is not an embedding database ({e}); fix: give the SQLite file "
                                "`birdclef embed` made") from None
        if not {"label", "embedding"} <= tables:
            raise ClassifyError(f"{db} holds no labels yet; fix: label windows with `birdclef review --db {db}`")
        rows = con.execute(
            "SELECT l.path, l.start_s, l.end_s, l.label, e.vector FROM label l "
            "JOIN (SELECT path, start_s, MAX(id) AS id FROM label GROUP BY path, round(start_s, 3)) n ON n.id = l.id "
            "JOIN recording r ON r.path = l.path "
            "JOIN embedding e ON e.recording_id = r.id AND e.kind = 'window' AND abs(e.start_s - l.start_s) < 0.0005 "
            "WHERE l.label != 'unsure' ORDER BY l.id").fetchall()
        unmatched = con.execute("SELECT COUNT(DISTINCT path || ':' || round(start_s, 3)) FROM label").fetchone()[0]
    finally:
        con.close()
    df = pd.DataFrame([r[:4] for r in rows], columns=["path", "start_s", "end_s", "label"])
    vecs = (np.stack([np.frombuffer(r[4], np.float32) for r in rows]) if rows
            else np.zeros((0, 0), np.float32))
    df.attrs["windows_labelled"] = int(unmatched)
    return df, vecs


def fit(x: np.ndarray, labels: list[str], seed: int = 0):
    """(classes, W [K, D], b [K]): one-vs-rest logistic regression; `not` is a negative for every class."""
    from sklearn.linear_model import LogisticRegression

    classes = sorted({l for l in labels if l != "not"})
    lab = np.asarray(labels)
    w, b = np.zeros((len(classes), x.shape[1]), np.float32), np.zeros(len(classes), np.float32)
    for k, c in enumerate(classes):
        y = (lab == c).astype(int)
        m = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed).fit(x, y)
        w[k], b[k] = m.coef_[0], m.intercept_[0]
    return classes, w, b


def decide(scores: np.ndarray, classes: list[str], threshold: float = 0.5) -> list[str]:
    best = scores.argmax(1)
    return [classes[i] if scores[j, i] >= threshold else "not" for j, i in enumerate(best)]


def heldout_check(x: np.ndarray, labels: list[str], groups: list[str], seed: int = 0) -> dict:
    """Cross-validated scores of every labelled window by classifiers that never saw it."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    lab = np.asarray(labels)
    counts = pd.Series(lab).value_counts()
    k = int(min(5, counts.min()))
    if k < 2:
        return {"folds": 0, "note": f"a held-out check needs at least 2 labelled windows of every label "
                                    f"({counts.idxmin()} has {int(counts.min())})"}
    try:
        splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x, lab, groups))
        if any(len(set(lab[tr]) - {"not"}) < len(set(lab) - {"not"}) for tr, _ in splits):
            raise ValueError("a fold lost a label")
        grouped = True
    except ValueError:
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, lab))
        grouped = False
    classes = sorted(set(lab) - {"not"})
    scores = np.zeros((len(lab), len(classes)), np.float32)
    for tr, te in splits:
        cls, w, b = fit(x[tr], list(lab[tr]), seed)
        s = 1 / (1 + np.exp(-(x[te] @ w.T + b)))
        for j, c in enumerate(cls):
            scores[te, classes.index(c)] = s[:, j]
    pred = np.asarray(decide(scores, classes))
    per = {c: {"windows": int((lab == c).sum()), "recall": float((pred[lab == c] == c).mean()),
               "ap": float(average_precision_score(lab == c, scores[:, j]))} for j, c in enumerate(classes)}
    return {"folds": k, "grouped_by_recording": grouped, "windows": int(len(lab)),
            "accuracy": float((pred == lab).mean()), "per_label": per}


def train(db: str, out: str, replace: bool = False, seed: int = 0, log=print) -> dict:
    if fileio.exists(fileio.join(out, SPEC)) and not replace:
        raise ClassifyError(f"--out {out} already holds a classifier; fix: give another --out, or --replace to "
                            "overwrite it")
    df, x = labelled_windows(db)
    if df.empty:
        raise ClassifyError(f"{db} holds no labelled windows (only `unsure`, or none); fix: label windows with "
                            f"`birdclef review --db {db}`")
    codes = sorted(set(df["label"]) - {"not"})
    if not codes or (len(codes) == 1 and (df["label"] == "not").sum() == 0):
        raise ClassifyError(f"{db}: labels {sorted(set(df['label']))} give nothing to tell apart; fix: label "
                            "windows of at least two species, or some windows `not`")
    con = sqlite3.connect(db)
    base, fingerprint = con.execute("SELECT path, fingerprint FROM model").fetchone()
    con.close()
    check = heldout_check(x, list(df["label"]), list(df["path"]), seed)
    classes, w, b = fit(x, list(df["label"]), seed)
    spec = {"base": fileio.absolute(base), "base_fingerprint": fingerprint,
            "classes": classes, "weights": w.tolist(), "bias": b.tolist(), "db": os.path.abspath(db),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "labelled": {c: int((df["label"] == c).sum()) for c in [*classes, "not"]},
            "heldout": check}
    fileio.write_json(fileio.join(out, "classes.json"), classes)
    fileio.write_json(fileio.join(out, SPEC), spec)  # last: its presence marks a finished classifier
    acc = f"held-out accuracy {check['accuracy']:.3f} ({check['folds']}-fold)" if check.get("folds") else check["note"]
    log(f"classify: {len(df)} labelled windows, labels {', '.join(classes)}; {acc}; model in {out}")
    return spec


class LinearServing:
    """The base model's serving function with its class scores replaced by the classifier's."""

    def __init__(self, base, weights: np.ndarray, bias: np.ndarray):
        self.base, self.w, self.b = base, np.asarray(weights, np.float32), np.asarray(bias, np.float32)

    def __call__(self, waveform):
        from birdclef.predict import as_numpy

        out = dict(self.base(waveform=waveform))
        emb = as_numpy(out["embedding"]).astype(np.float32)
        out["scores"] = (1.0 / (1.0 + np.exp(-(emb @ self.w.T + self.b)))).astype(np.float32)
        return out


def load(model_path: str, threads: int | None = None):
    """(serving function, classes, path) of a classifier directory (threads: see predict.load_model)."""
    from birdclef import predict

    spec = json.loads(fileio.read_text(fileio.join(model_path, SPEC)))
    if predict.find_export(spec["base"]) is None:
        raise predict.PredictError(f"{model_path}: its base model {spec['base']} is gone; fix: restore it, or "
                                   "embed and classify again with the model you have")
    base, _, _ = predict.load_model(spec["base"], threads)
    return LinearServing(base, np.asarray(spec["weights"]), np.asarray(spec["bias"])), list(spec["classes"]), model_path
