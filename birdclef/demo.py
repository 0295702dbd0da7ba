"""`birdclef demo`: every stage that exists, end to end, on fresh synthetic data."""
from __future__ import annotations

import json
import time

from birdclef import fileio


def _list_outputs(work_dir: str) -> list[str]:
    """CSV/JSON outputs one per line; TFRecord, JSONL and audio folders summarised."""
    import collections

    lines, bulk = [], collections.defaultdict(lambda: [0, 0])
    for p in fileio.list_files(work_dir, ("",)):
        sub = next((d for d in ("/tft/transform_fn/", "/tft/transformed_metadata/", "/tft/metadata/",
                                 "/model/export/", "/model/ckpt/", "/model/best/", "/model/logs/",
                                 "/predictions/parts/") if d in p), None)
        if sub:
            bulk[p.split(sub)[0] + sub][0] += 1
            continue
        ext = p.rsplit(".", 1)[-1]
        if ext in ("tfrecord", "jsonl", "ogg"):
            key = f"{fileio.dirname(p)}/*.{ext}" if ext != "ogg" else f"{work_dir}/data/**/*.ogg"
            bulk[key][0] += 1
            bulk[key][1] += fileio.size(p)
        else:
            lines.append(f"  {p}")
    for key, (n, size) in sorted(bulk.items()):
        lines.append(f"  {key}: {n} files" + (f", {size / 1e6:.1f} MB" if size else ""))
    return sorted(lines)


def run(args) -> int:
    from birdclef import cli

    t0 = time.time()
    work = args.work_dir
    data = fileio.join(work, "data")
    fileio.makedirs(work)
    steps = []

    s = cli.run_synth(data, cli.synth_config(args))
    steps.append(f"synth     {data}: {s['recordings']} recordings, {len(s['species'])} species, "
                 f"{s['soundscapes']} labelled soundscapes, {s['nonbird_clips']} non-bird clips")

    rep = cli.run_validate(data, decode=True, min_duration=0.25, nonbird_dirs=(fileio.join(data, "nonbird"),))
    report_path = fileio.join(work, "validate.json")
    fileio.write_text(report_path, json.dumps(rep.__dict__, indent=2))
    steps.append(f"validate  {report_path}: {rep.summary()}")

    from birdclef import preprocess, transform

    pre = preprocess.run(work, preprocess.PreprocessConfig(
        data_dir=data, nonbird_dirs=(fileio.join(data, "nonbird"),), seed=args.seed))
    steps.append(f"preprocess {preprocess.out_dir(work)}: {pre['usable']['recordings']} recordings "
                 f"split {_per_split(pre['splits'])}, train_metadata_pos_neg.csv")
    tm = transform.run(work, getattr(args, "beam_args", None))
    steps.append(f"transform {work}/transform: {tm['processed']} decoded, {tm['quarantined']} quarantined, "
                 f"chunks {_per_split(tm['chunks_per_split'])}, {tm['triples']} triples, "
                 f"{tm['soundscape_windows']} soundscape windows")

    from birdclef import train

    ckpt = fileio.join(work, "model")
    m = train.run(train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=32, epochs=args.epochs,
                                    model="dilated_cnn", loss="batch_hard+classify", seed=args.seed))
    t = m["test"]
    steps.append(f"train     {ckpt}: dilated_cnn, {m['epochs_trained']} epochs; test split k-NN top-1 "
                 f"{t.get('knn_top1', float('nan')):.3f}, classifier top-1 {t.get('classifier_top1', float('nan')):.3f} "
                 f"(chance {t.get('chance_uniform', float('nan')):.3f}); SavedModel {ckpt}/export")

    from birdclef import evaluate, predict

    ev = evaluate.run(work, ckpt, log=lambda *a: None)
    steps.append(f"evaluate  {ckpt}/evaluation.json: test chunks accuracy {ev.get('accuracy', float('nan')):.3f}, "
                 f"mAP {ev.get('mAP', float('nan')):.3f}; soundscape windows row-wise F1 "
                 f"{ev.get('row_f1', float('nan')):.3f} (always-nocall {ev.get('row_f1_all_nocall', float('nan')):.3f}), "
                 f"detection precision {ev.get('detection_precision', float('nan')):.3f} "
                 f"recall {ev.get('detection_recall', float('nan')):.3f}")
    if ev.get("at_val_threshold"):
        steps.append(f"          threshold chosen on the {ev['val_threshold']['source']}: "
                     f"{ev['val_threshold']['threshold']} (test row-wise F1 at it "
                     f"{ev['at_val_threshold']['row_f1']:.3f}; `birdclef predict --threshold val` uses it)")
    pred_out = fileio.join(work, "predictions")
    pr = predict.run(ckpt, [fileio.join(data, "test_soundscapes")], pred_out, log=lambda *a: None)
    steps.append(f"predict   {pred_out}: {pr['windows']} windows of {pr['predicted']} test soundscape(s), "
                 f"{pr['windows_with_birds']} with birds: submission.csv, scores.csv, raven/")

    print(f"\nbirdclef demo finished in {time.time() - t0:.0f} s. What it made:")
    for line in steps:
        print(f"  {line}")
    print(f"\nFiles in {work}:")
    print("\n".join(_list_outputs(work)))
    return 0 if rep.ok else 1


def _per_split(counts: dict) -> str:
    """{'train': 48, 'val': 9, 'test': 9} -> '48 train / 9 val / 9 test'."""
    return " / ".join(f"{n} {s}" for s, n in counts.items())
