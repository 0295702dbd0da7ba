import pandas as pd
import pytest

from birdclef import preprocess
from birdclef.data import split
from birdclef.data.pairs import SEP
from birdclef.stages import StageConflict


@pytest.fixture(scope="module")
def pre(shared_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("pre")
    cfg = preprocess.PreprocessConfig(data_dir=str(shared_data / "birdclef-mini"),
                                      nonbird_dirs=(str(shared_data / "nonbird"),), seed=3)
    manifest = preprocess.run(str(work), cfg, log=lambda s: None)
    out = preprocess.out_dir(str(work))
    rec = pd.read_csv(f"{out}/recordings.csv", keep_default_na=False)
    pn = pd.read_csv(f"{out}/train_metadata_pos_neg.csv", keep_default_na=False)
    return work, cfg, manifest, rec, pn


def test_split_counts_rule():
    assert split.split_counts(1, 0.1, 0.1) == (1, 0, 0)
    assert split.split_counts(2, 0.1, 0.1) == (1, 0, 1)
    assert split.split_counts(3, 0.1, 0.1) == (1, 1, 1)
    assert split.split_counts(20, 0.1, 0.1) == (16, 2, 2)
    assert split.split_counts(4, 0.4, 0.4) == (1, 1, 2)  # at least one left for training
    for n in range(3, 60):
        for t, v in ((0.1, 0.1), (0.2, 0.1), (0.15, 0.25)):
            tr, va, te = split.split_counts(n, t, v)
            assert tr + va + te == n and min(tr, va, te) >= 1
            assert abs(te - n * t) < 1 + 1e-9 or te == 1
            assert abs(va - n * v) < 1 + 1e-9 or va == 1


def test_no_recording_in_two_splits_and_all_species_in_all_splits(pre):
    _, _, manifest, rec, _ = pre
    assert rec["recording_id"].is_unique
    assert manifest["usable"]["recordings"] == 98 + 145 == len(rec)
    birds = rec[rec.label != "nocall"]
    for label, grp in birds.groupby("label"):
        n = len(grp)
        counts = grp["split"].value_counts()
        if n >= 3:
            assert set(counts.index) == {"train", "val", "test"}, label
            assert abs(counts["test"] - 0.1 * n) < 1 and abs(counts["val"] - 0.1 * n) < 1, label
    assert sorted(s.split(" ")[0] for s in manifest["strata_with_fewer_than_3_recordings"]) == ["bengfi", "eursto1"]


def test_positives_and_negatives(pre):
    _, _, _, rec, pn = pre
    info = rec.set_index("recording_id")
    assert list(pn["anchor_id"]) == sorted(rec["recording_id"])
    for r in pn.itertuples():
        pos, neg = r.positive_ids.split(SEP), r.negative_ids.split(SEP)
        assert all(info.loc[p, "split"] == r.split for p in pos + neg)
        assert all(info.loc[p, "label"] == r.label for p in pos)
        assert all(info.loc[n, "label"] != r.label for n in neg)
        assert r.negative_duration_s >= r.duration_s - 1e-3
        if r.positive_is_self:
            assert pos == [r.anchor_id]
            assert ((rec.label == r.label) & (rec.split == r.split)).sum() == 1
        else:
            assert r.anchor_id not in pos
            assert r.positive_duration_s >= r.duration_s - 1e-3
    # more than one positive where one is not long enough
    assert (pn.positive_ids.str.count(SEP) >= 1).any()


def test_deterministic_and_refuses_other_parameters(pre, tmp_path):
    work, cfg, _, rec, pn = pre
    again = preprocess.run(str(tmp_path), cfg, log=lambda s: None)
    out = preprocess.out_dir(str(tmp_path))
    assert pd.read_csv(f"{out}/recordings.csv", keep_default_na=False).equals(rec)
    assert pd.read_csv(f"{out}/train_metadata_pos_neg.csv", keep_default_na=False).equals(pn)
    assert again["splits"] == pre[2]["splits"]
    import dataclasses

    with pytest.raises(StageConflict, match="seed"):
        preprocess.run(str(work), dataclasses.replace(cfg, seed=4), log=lambda s: None)
