"""Species-stratified split, grouped by recording.

Rule, per stratum (a species; each non-bird category) of n recordings, after a
seeded shuffle:
  - n >= 3: test = max(1, round(n * test_percent)), val = max(1, round(n * val_percent)),
    train = the rest (at least 1). Every such species is in all three splits and
    each split is within one recording of its target n * percent.
  - n == 2: one train, one test (no validation recording).
  - n == 1: train only.
Species with n < 3 are reported. A recording listed under several strata is
placed once, by the first stratum that reaches it, so no recording is in two
splits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_counts(n: int, test_percent: float, val_percent: float) -> tuple[int, int, int]:
    if n >= 3:
        n_test = max(1, int(round(n * test_percent)))
        n_val = max(1, int(round(n * val_percent)))
        while n_test + n_val > n - 1:  # keep at least one for training
            if n_val >= n_test and n_val > 1:
                n_val -= 1
            elif n_test > 1:
                n_test -= 1
            else:
                break
        return n - n_test - n_val, n_val, n_test
    if n == 2:
        return 1, 0, 1
    return n, 0, 0


def stratified_split(df: pd.DataFrame, strata_col: str, group_col: str, test_percent: float,
                     val_percent: float, seed: int) -> tuple[pd.Series, list[str]]:
    """Return (split per row, strata with fewer than 3 recordings)."""
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}
    small: list[str] = []
    for stratum in sorted(df[strata_col].unique()):
        groups = sorted(set(df.loc[df[strata_col] == stratum, group_col]) - set(assigned))
        groups = [groups[i] for i in rng.permutation(len(groups))]
        n_train, n_val, n_test = split_counts(len(groups), test_percent, val_percent)
        if len(groups) < 3:
            small.append(f"{stratum} ({len(groups)} recording{'s' if len(groups) != 1 else ''})")
        for g in groups[:n_test]:
            assigned[g] = "test"
        for g in groups[n_test:n_test + n_val]:
            assigned[g] = "val"
        for g in groups[n_test + n_val:]:
            assigned[g] = "train"
    return df[group_col].map(assigned), small


NONBIRD_HOLDOUT = 0.3  # share of non-bird clips held out (half val, half test)


def split_nonbird(df: pd.DataFrame, holdout: float, seed: int) -> pd.Series:
    """Non-bird clips (columns recording_id, category, source_type) -> split per row.

    Per source type (the `source` of the non-bird folder's metadata.csv, else the folder): a share
    `holdout` of its clips (at least one val and one test clip where it has 3 or more) is held out,
    alternately test and val, the rest trains. Held-out clips are taken one per category, categories
    in a seeded order, before any category gives a second, so val and test each span as many
    categories as they can while most non-bird audio (1 - holdout) trains. Splitting per category
    instead left one clip of three to training (35 % of the non-bird audio)."""
    rng = np.random.default_rng([seed, 11])
    out = {}
    for st in sorted(df["source_type"].unique()):
        grp = df[df["source_type"] == st]
        by_cat = {}
        for cat in sorted(grp["category"].unique()):
            ids = sorted(grp.loc[grp["category"] == cat, "recording_id"])
            by_cat[cat] = [ids[i] for i in rng.permutation(len(ids))]
        cats = [sorted(by_cat)[i] for i in rng.permutation(len(by_cat))]
        order = [by_cat[c][k] for k in range(max(map(len, by_cat.values()))) for c in cats if k < len(by_cat[c])]
        n = len(order)
        held = min(n - 1, max(2 if n >= 3 else 0, int(round(n * holdout)))) if n else 0
        for i, rid in enumerate(order):
            out[rid] = ("test" if i % 2 == 0 else "val") if i < held else "train"
    return df["recording_id"].map(out)


def split_soundscapes(audio_ids: list[str], test_percent: float, val_percent: float, seed: int) -> dict[str, str]:
    """Soundscapes split by recording, with the same counting rule (one stratum)."""
    ids = sorted(audio_ids)
    ids = [ids[i] for i in np.random.default_rng([seed, 7]).permutation(len(ids))]
    n_train, n_val, n_test = split_counts(len(ids), test_percent, val_percent)
    out = {a: "test" for a in ids[:n_test]}
    out.update({a: "val" for a in ids[n_test:n_test + n_val]})
    out.update({a: "train" for a in ids[n_test + n_val:]})
    return out
