"""`birdclef transform`: stage 1 (Beam) -> pairing -> stage 2 (Beam + TFT).

Reads WORK_DIR/preprocess, writes WORK_DIR/transform/{chunks,pairs,tft} and
WORK_DIR/transform/manifest.json (inputs = processed + quarantined, with
reasons). Each part is skipped when already finished with the same
parameters; an unfinished part is cleaned and run again; a part finished with
other parameters is refused.
"""
from __future__ import annotations

import dataclasses
import io
import json
import tempfile
import time

import pandas as pd

from birdclef import fileio, stages
from birdclef.config import DEFAULT_FEATURES, AudioConfig, FeatureConfig
from birdclef.pipeline import runner
from birdclef.preprocess import out_dir as preprocess_dir


class TransformError(Exception):
    pass


def _clean(path: str) -> None:
    """Remove an unfinished stage output (made by birdclef, never user data)."""
    fileio.remove_tree(path)
    fileio.makedirs(path)


def _run_pipeline(build, beam_args):
    from birdclef.pipeline.runner import make_pipeline

    with make_pipeline(beam_args) as p:
        build(p)


def run(work_dir: str, beam_args: list[str] | None = None, feature_cfg: FeatureConfig = DEFAULT_FEATURES,
        log=print) -> dict:
    pre = preprocess_dir(work_dir)
    if not fileio.exists(stages.marker(pre)):
        raise TransformError(f"{pre} holds no finished preprocess; fix: run `birdclef preprocess --work-dir "
                             f"{work_dir} --data-dir ...` first")
    with stages.locked(fileio.join(work_dir, "transform"), "birdclef transform"):
        return _run(work_dir, beam_args, feature_cfg, log)


def _run(work_dir: str, beam_args: list[str] | None, feature_cfg: FeatureConfig, log) -> dict:
    from birdclef.pipeline import pairing, stage1_chunks, stage2_tft

    pre = preprocess_dir(work_dir)
    marker = stages.marker(pre)
    pre_params = json.loads(fileio.read_text(marker))["params"]
    acfg = AudioConfig(sample_rate=feature_cfg.sample_rate, min_duration_s=pre_params["min_duration_s"])
    from birdclef.pipeline.records import FORMAT_VERSION

    params = {"preprocess": pre_params, "features": dataclasses.asdict(feature_cfg), "audio": dataclasses.asdict(acfg),
              "records_format": FORMAT_VERSION}
    root = fileio.join(work_dir, "transform")
    chunks_dir, pairs_dir, tft_dir = (fileio.join(root, d) for d in ("chunks", "pairs", "tft"))

    if stages.is_done(chunks_dir, {**params, "part": "stage1"}, "transform stage 1"):
        log(f"transform: stage 1 already complete in {chunks_dir}")
    else:
        _clean(chunks_dir)
        items = stage1_chunks.work_items(pre, pre_params["data_dir"])
        args, how = runner.stage1_args(beam_args, sum(i["seconds"] for i in items))
        log(f"transform: stage 1: decoding {len(items)} recordings and soundscapes into {chunks_dir}; {how}")
        t0 = time.perf_counter()
        _run_pipeline(lambda p: stage1_chunks.build(p, items, chunks_dir, acfg, feature_cfg), args)
        log(f"transform: stage 1 took {time.perf_counter() - t0:.1f} s")
        stages.mark_done(chunks_dir, {**params, "part": "stage1"}, "transform stage 1")

    if stages.is_done(pairs_dir, {**params, "part": "pairing"}, "transform pairing"):
        pairs = json.loads(fileio.read_text(fileio.join(pairs_dir, "pairs.json")))
    else:
        _clean(pairs_dir)
        pairs = pairing.run(pre, chunks_dir, pairs_dir)
        fileio.write_text(fileio.join(pairs_dir, "pairs.json"), json.dumps(pairs, indent=2))
        stages.mark_done(pairs_dir, {**params, "part": "pairing"}, "transform pairing")
    for p in pairs["problems"]:
        log(f"transform: pairing: {p}")

    if stages.is_done(tft_dir, {**params, "part": "stage2"}, "transform stage 2"):
        log(f"transform: stage 2 already complete in {tft_dir}")
    else:
        _clean(tft_dir)
        stage2_args = runner.shuffle_bound_args(beam_args)
        if runner.is_direct(stage2_args):
            n_chunks = sum(pairing.read_counts(chunks_dir).values())
            warning = runner.stage2_memory_warning(n_chunks, runner.available_memory_mb())
            if warning:
                log(f"transform: {warning}")
        log(f"transform: stage 2: fitting normalisation on train, writing TFRecords to {tft_dir}")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="birdclef-tft-") as tmp:
            temp_dir = tmp if not fileio.is_remote(tft_dir) else fileio.join(root, "tmp")
            _run_pipeline(lambda p: stage2_tft.build(
                p, chunks_dir, fileio.join(pairs_dir, "triples.jsonl"), tft_dir, feature_cfg, temp_dir),
                          stage2_args)
        log(f"transform: stage 2 took {time.perf_counter() - t0:.1f} s")
        stages.mark_done(tft_dir, {**params, "part": "stage2"}, "transform stage 2")

    manifest = write_manifest(work_dir, pre, chunks_dir, pairs)
    return manifest


def write_manifest(work_dir: str, pre: str, chunks_dir: str, pairs: dict) -> dict:
    pre_q = pd.read_csv(io.StringIO(fileio.read_text(fileio.join(pre, "quarantine.csv"))), dtype=str,
                        keep_default_na=False).to_dict("records")
    counts = fileio.read_jsonl(fileio.join(chunks_dir, "counts*.jsonl"))
    stage1_q = fileio.read_jsonl(fileio.join(chunks_dir, "quarantine*.jsonl"))
    quarantined = [{"path": q["path"], "reason": q["reason"], "message": q["message"], "stage": q["stage"]}
                   for q in pre_q + stage1_q]
    processed = sorted(c["path"] for c in counts)
    chunks_per_split: dict[str, int] = {}
    for c in counts:
        if c["kind"] == "recording":
            chunks_per_split[c["split"]] = chunks_per_split.get(c["split"], 0) + c["n_chunks"]
    manifest = {
        "inputs": len(processed) + len(quarantined),
        "processed": len(processed),
        "quarantined": len(quarantined),
        "quarantine_reasons": pd.Series([q["reason"] for q in quarantined], dtype=str).value_counts().to_dict(),
        "chunks_per_split": chunks_per_split,
        "soundscape_windows": sum(c["n_chunks"] for c in counts if c["kind"] == "soundscape") // 4,
        "triples": pairs["triples"], "triples_per_split": pairs["per_split"],
        "processed_files": processed,
        "quarantined_files": quarantined,
    }
    fileio.write_text(fileio.join(work_dir, "transform", "manifest.json"), json.dumps(manifest, indent=2))
    return manifest
