"""Positive and negative recordings for every anchor recording.

For each anchor (every recording, birds and non-bird alike, in every split) we
draw, from the anchor's own split so that no split leaks into another:
  - positives: other recordings of the same label, in random order, taken
    until their total duration is at least the anchor's; when the candidates
    run out first they are reused in the same order. An anchor alone in its
    split and label is its own positive (`positive_is_self`), and pairing then
    uses its other chunks.
  - negatives: recordings of other labels (other species or `nocall`), in
    random order, until their total duration is at least the anchor's.
Durations come from file headers. Deterministic for a seed.

`train_metadata_pos_neg.csv` columns:
  anchor_id, label, split, duration_s, path,
  positive_ids, positive_duration_s, positive_is_self,
  negative_ids, negative_labels, negative_duration_s
with `;` between ids (ids are `<label>/<file name>` for train_short_audio and
`nonbird/<category>/<file name>` for non-bird clips).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SEP = ";"
POS_NEG_COLUMNS = ["anchor_id", "label", "split", "duration_s", "path", "positive_ids", "positive_duration_s",
                   "positive_is_self", "negative_ids", "negative_labels", "negative_duration_s"]


def _fill(candidates: list[int], durations: np.ndarray, need: float) -> list[int]:
    picked, total = [], 0.0
    while candidates and total < need:
        for c in candidates:
            picked.append(c)
            total += durations[c]
            if total >= need:
                break
    return picked


def select_pos_neg(rec: pd.DataFrame, seed: int) -> pd.DataFrame:
    """rec: one row per usable recording with recording_id, label, split, duration_s, path."""
    rec = rec.sort_values("recording_id").reset_index(drop=True)
    rng = np.random.default_rng([seed, 11])
    durations = rec["duration_s"].to_numpy(dtype=float)
    ids, labels = rec["recording_id"].tolist(), rec["label"].tolist()
    by_split = {s: np.flatnonzero(rec["split"].to_numpy() == s) for s in rec["split"].unique()}
    rows = []
    for i, r in rec.iterrows():
        pool = by_split[r["split"]]
        same = [int(j) for j in pool if labels[j] == r["label"] and j != i]
        other = [int(j) for j in pool if labels[j] != r["label"]]
        same = [same[k] for k in rng.permutation(len(same))]
        other = [other[k] for k in rng.permutation(len(other))]
        pos = _fill(same, durations, durations[i]) or [i]
        neg = _fill(other, durations, durations[i])
        rows.append({
            "anchor_id": ids[i], "label": labels[i], "split": r["split"], "duration_s": round(durations[i], 4),
            "path": r["path"],
            "positive_ids": SEP.join(ids[j] for j in pos),
            "positive_duration_s": round(float(durations[pos].sum()), 4),
            "positive_is_self": pos == [i],
            "negative_ids": SEP.join(ids[j] for j in neg),
            "negative_labels": SEP.join(labels[j] for j in neg),
            "negative_duration_s": round(float(durations[neg].sum()), 4) if neg else 0.0,
        })
    return pd.DataFrame(rows, columns=POS_NEG_COLUMNS)
