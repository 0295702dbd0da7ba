"""`birdclef preprocess`: split recordings and pick positives/negatives.

Writes to WORK_DIR/preprocess/:
  recordings.csv             every usable recording: recording_id, label, secondary_labels,
                             source (train_short_audio | nonbird), category, split, duration_s, path
  soundscapes.csv            labelled soundscape files: audio_id, site, split, duration_s, path
  train_metadata_pos_neg.csv anchor -> positives and negatives (see birdclef.data.pairs)
  quarantine.csv             inputs left out, with reason and message
  manifest.json              counts: inputs = usable + quarantined; species too small for 3 splits
Durations come from file headers (no decoding). Non-bird clips get label `nocall`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json

import pandas as pd

from birdclef import audio, fileio, stages
from birdclef.config import NOCALL, AudioConfig
from birdclef.data import metadata, pairs, split

QUARANTINE_COLUMNS = ["path", "reason", "message", "stage"]


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    data_dir: str
    metadata_file: str = "train_metadata.csv"
    test_percent: float = 0.1
    val_percent: float = 0.1
    seed: int = 0
    nonbird_dirs: tuple[str, ...] = ()
    min_duration_s: float = 0.25
    nonbird_holdout: float = split.NONBIRD_HOLDOUT


def out_dir(work_dir: str) -> str:
    return fileio.join(work_dir, "preprocess")


def _nonbird_recordings(dirs: tuple[str, ...]) -> list[dict]:
    rows = []
    for d in dirs:
        prefix = "nonbird" if len(dirs) == 1 else f"nonbird/{fileio.basename(d)}"
        meta_csv = fileio.join(d, "metadata.csv")
        categories, sources = {}, {}
        if fileio.exists(meta_csv):
            m = pd.read_csv(io.StringIO(fileio.read_text(meta_csv)), dtype=str, keep_default_na=False)
            if {"filename", "category"} <= set(m.columns):
                categories = dict(zip(m["filename"], m["category"]))
            if {"filename", "source"} <= set(m.columns):
                sources = dict(zip(m["filename"], m["source"]))
        for p in fileio.list_files(d, audio.AUDIO_SUFFIXES):
            rel = fileio.relpath(p, d)
            cat = categories.get(rel) or (rel.split("/")[0] if "/" in rel else fileio.basename(d))
            # source type (split.split_nonbird): the metadata's `source`, else the folder
            rows.append({"recording_id": f"{prefix}/{rel}", "label": NOCALL, "secondary_labels": "[]",
                         "source": "nonbird", "category": cat, "path": p,
                         "source_type": f"{prefix}:{sources.get(rel) or ''}"})
    return rows


def _probe_all(paths: list[str], cfg: AudioConfig, workers: int = 16) -> dict[str, object]:
    """path -> duration (float) or AudioError, header only, in parallel (remote stores are slow per file)."""

    def one(p):
        try:
            return p, audio.probe_usable(p, cfg).duration
        except audio.AudioError as e:
            return p, e

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return dict(ex.map(one, paths))


def run(work_dir: str, cfg: PreprocessConfig, log=print) -> dict:
    out = out_dir(work_dir)
    params = {"stage": "preprocess", **dataclasses.asdict(cfg)}
    if stages.is_done(out, params, "preprocess"):
        log(f"preprocess: {out} is complete for these parameters, kept as is")
        return json.loads(fileio.read_text(fileio.join(out, "manifest.json")))
    quarantine: list[dict] = []

    ds = metadata.read_train_metadata(cfg.data_dir, cfg.metadata_file, strict=False)
    quarantine += [{**r, "stage": "preprocess"} for r in ds.rejected]
    birds = pd.DataFrame({
        "recording_id": ds.metadata["primary_label"] + "/" + ds.metadata["filename"],
        "label": ds.metadata["primary_label"],
        "secondary_labels": [repr(list(s)) for s in ds.metadata["secondary"]],  # parsed: a malformed cell is []
        "source": "train_short_audio", "category": ds.metadata["primary_label"], "path": ds.metadata["path"],
    })
    nonbird = pd.DataFrame(_nonbird_recordings(cfg.nonbird_dirs), columns=[*birds.columns, "source_type"])
    rec = pd.concat([birds, nonbird], ignore_index=True)  # source_type: for split_nonbird, not written
    n_inputs = len(rec) + len(ds.rejected)

    acfg = AudioConfig(min_duration_s=cfg.min_duration_s)
    probed = _probe_all(list(rec["path"]), acfg)
    bad = [p for p, v in probed.items() if isinstance(v, audio.AudioError)]
    for p in bad:
        e = probed[p]
        quarantine.append({"path": p, "reason": e.reason, "message": str(e), "stage": "preprocess"})
        log(str(e))
    rec = rec[~rec["path"].isin(bad)].copy()
    rec["duration_s"] = [round(float(probed[p]), 4) for p in rec["path"]]

    is_bird = rec["label"] != NOCALL
    rec["split"], small = split.stratified_split(rec[is_bird].assign(stratum=rec["label"]), "stratum",
                                                 "recording_id", cfg.test_percent, cfg.val_percent, cfg.seed)
    rec.loc[~is_bird, "split"] = split.split_nonbird(rec[~is_bird], cfg.nonbird_holdout, cfg.seed)
    rec = rec.drop(columns="source_type").sort_values("recording_id").reset_index(drop=True)

    soundscapes = _soundscapes(cfg, acfg, quarantine, log)
    pos_neg = pairs.select_pos_neg(rec, cfg.seed)

    manifest = {
        "inputs": {"recordings": n_inputs, "soundscapes": len(soundscapes) + sum(
            q["stage"] == "preprocess:soundscape" for q in quarantine)},
        "usable": {"recordings": len(rec), "soundscapes": len(soundscapes)},
        "quarantined": len(quarantine),
        "quarantine_reasons": pd.Series([q["reason"] for q in quarantine], dtype=str).value_counts().to_dict(),
        "splits": {s: int((rec["split"] == s).sum()) for s in split.SPLITS},
        "labels": int(rec.loc[rec["label"] != NOCALL, "label"].nunique()),
        "nocall_recordings": int((rec["label"] == NOCALL).sum()),
        "strata_with_fewer_than_3_recordings": small,
        "split_rule": split.__doc__.strip().splitlines()[2:10],
        "nonbird_split_rule": split.split_nonbird.__doc__.strip().splitlines()[:6],
        "nonbird_splits": {s: int(((rec["split"] == s) & (rec["label"] == NOCALL)).sum()) for s in split.SPLITS},
    }
    fileio.makedirs(out)
    fileio.write_text(fileio.join(out, "recordings.csv"), rec.to_csv(index=False))
    fileio.write_text(fileio.join(out, "soundscapes.csv"), soundscapes.to_csv(index=False))
    fileio.write_text(fileio.join(out, "train_metadata_pos_neg.csv"), pos_neg.to_csv(index=False))
    fileio.write_text(fileio.join(out, "quarantine.csv"),
                      pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS).to_csv(index=False))
    fileio.write_text(fileio.join(out, "manifest.json"), json.dumps(manifest, indent=2))
    stages.mark_done(out, params, "preprocess", {"recordings": len(rec), "quarantined": len(quarantine)})
    if small:
        log(f"preprocess: fewer than 3 recordings, so not in all splits: {', '.join(small)}")
    return manifest


def _soundscapes(cfg: PreprocessConfig, acfg: AudioConfig, quarantine: list[dict], log) -> pd.DataFrame:
    cols = ["audio_id", "site", "split", "duration_s", "path"]
    if not fileio.exists(fileio.join(cfg.data_dir, "train_soundscape_labels.csv")):
        return pd.DataFrame(columns=cols)
    try:
        labels = metadata.read_soundscape_labels(cfg.data_dir)
    except metadata.MetadataError as e:
        for p in e.problems:
            log(f"{e.path}: {p}")
            quarantine.append({"path": e.path, "reason": "metadata", "message": p, "stage": "preprocess:soundscape"})
        return pd.DataFrame(columns=cols)
    files = labels.drop_duplicates("path")[["audio_id", "site", "path"]]
    probed = _probe_all(list(files["path"]), acfg)
    keep = []
    for r in files.itertuples(index=False):
        v = probed[r.path]
        if isinstance(v, audio.AudioError):
            quarantine.append({"path": r.path, "reason": v.reason, "message": str(v), "stage": "preprocess:soundscape"})
            log(str(v))
        else:
            keep.append({"audio_id": r.audio_id, "site": r.site, "duration_s": round(float(v), 4), "path": r.path})
    sc = pd.DataFrame(keep, columns=["audio_id", "site", "duration_s", "path"])
    splits = split.split_soundscapes(list(sc["audio_id"]), cfg.test_percent, cfg.val_percent, cfg.seed)
    sc["split"] = sc["audio_id"].map(splits)
    return sc[cols]
