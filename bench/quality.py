"""Quality on real field audio: recipes x seeds on birdclef-plus + nonbird, held-out test split.

    python bench/quality.py [--seeds 0 1 2] [--epochs 20] [--recipes default,baseline] [--work /tmp/bq]

Preprocesses and transforms ../shared/data/birdclef-plus (31 labels) with ../shared/data/nonbird once,
then for every recipe and seed trains `dilated_cnn` (`batch_hard+classify`), runs `birdclef evaluate`
(soundscapes: all labelled ones; none of them gives training chunks, as they have no `nocall` window)
and prints, per recipe, the mean and spread (min-max) over seeds of:

  bird top-1      top bird class of the test split's bird chunks (31 labels)
  top1 balanced   the same, averaged per species (each of the 30 test species counts once; the chunk
                  figure is mostly decided by the 4 longest test recordings, 122 of 234 chunks)
  mAP             macro AP over the test chunks' classes
  presence AUC/F1 bird presence of test chunks: bird recordings against non-bird clips
  non-bird->bird  share of the test split's non-bird clips given a bird label by `predict` at the
                  class threshold and bird-presence gate `evaluate` chose on validation data
  bird windows    the same `predict` on the test split's bird recordings: share of their 5 s windows
                  given any bird (heard) and given their own species (named): the gate's cost in recall
  window AUC      bird presence per 5 s window: the labelled soundscape windows (all hold birds) against
                  the windows of the test split's non-bird clips
  1001_PA F1      BirdCLEF row-wise F1 on soundscape 1001_PA at the validation threshold (its
                  always-`nocall` floor is 0: both windows hold birds)
  quiet->bird     share of 5 s windows of quiet empty audio heard as a bird (presence >= the validation
                  gate): digital silence and white, pink and brown hiss at -90, -75, -60 and -45 dBFS RMS
                  (13 windows), and the test split's non-bird clips 40 dB quieter (held-out sounds, far off)

With --split-seeds, the recipes also run on other train/val/test splits of the same data (each holds out
other recordings), and a row's spread is over splits and seeds together.

With --ensemble K, each recipe's seeds are also averaged in disjoint groups of K (`birdclef ensemble`) and
measured the same way: the row '<recipe> xK' has one entry per group.

Recipes (`train` flags): default (today's defaults), baseline (--augment none --lr-schedule constant
--nocall-share 0: the recipe before augmentation, the LR schedule and the non-bird share), and
no-<augmentation> (the default minus one augmentation: the ablation rows).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARED = Path(os.environ.get("BIRDCLEF_SHARED_DATA", REPO.parent / "shared" / "data"))

from birdclef import augment  # noqa: E402


def recipes(teacher: str = "") -> dict[str, dict]:
    out = {"default": {}, "no-ema": {"ema": 0.0},
           "baseline": {"augment": "none", "lr_schedule": "constant", "nocall_share": 0.0, "ema": 0.0},
           # the baseline's differences from the default, one at a time
           "lr-constant": {"lr_schedule": "constant"}, "nocall-share-0": {"nocall_share": 0.0},
           # augmentation (off by default): all of it, the two that change no label and add no other
           # recording's audio, and all but one (the ablation rows)
           "augment-all": {"augment": "all"}, "light": {"augment": "shift,gain"},
           "pitch": {"augment": "pitch"}, "pitch-spec": {"augment": "pitch,specaugment"},
           # an exponential moving average of the weights validated and exported (birdclef.averaging)
           "ema": {"ema": 0.99}, "ema-995": {"ema": 0.995}, "ema-light": {"ema": 0.99, "augment": "shift,gain"},
           "ema-drop": {"ema": 0.99, "dropout": 0.3},
           # screening (issue 16, bird top-1 >= 0.75): the class head alone, smaller batches, a higher rate
           "classify": {"loss": "classify"}, "bs32": {"batch_size": 32}, "lr3": {"lr": 3e-3},
           "emb256": {"embedding_dim": 256},
           "alpha-0.5": {"balance_alpha": 0.5}, "alpha-0.3": {"balance_alpha": 0.3}, "wd": {"weight_decay": 0.5},
           "classify-bs32": {"loss": "classify", "batch_size": 32},
           "resnet": {"model": "resnet"}, "crnn": {"model": "crnn"},
           "floor-dilated": {"model": "floor_dilated"}, "dilated": {"model": "dilated_cnn"},  # the default before it
           "floor-attention": {"model": "floor_attention"}, "stem": {"model": "stem_dilated"},
           "smooth-0.1": {"label_smoothing": 0.1}, "lr-5e-4": {"lr": 5e-4},
           "bs128": {"batch_size": 128}, "ema-998": {"ema": 0.998},
           "background": {"augment": "background"}, "shift": {"augment": "shift"}, "quiet": {"augment": "quiet"}, "shift-quiet": {"augment": "shift,quiet"},
           "none": {"augment": "none"},  # the default before shift,quiet
           # bird chunks showing no call (a song's pauses) count less (birdclef.weak_labels)
           "call-0.2": {"call_weight": 0.2},
           # a random smooth spectral tilt per chunk (recording colour is not the species)
           "filter": {"augment": "shift,quiet,filter"},
           "background-shift": {"augment": "background,shift"},
           "classify-resnet": {"loss": "classify", "model": "resnet"}}
    if teacher:  # distillation (`train --teacher`): a trained model or ensemble on the same data teaches
        out.update({"distill": {"teacher": teacher}, "distill-0.8": {"teacher": teacher, "distill": 0.8}})
    for name in augment.AUGMENTATIONS:
        out[f"no-{name}"] = {"augment": ",".join(a for a in augment.AUGMENTATIONS if a != name)}
    return out


def prepare(work: str, split_seed: int = 0) -> None:
    """Preprocess and transform once; a second bench started on the same --work waits for the first's."""
    from birdclef import preprocess, stages, transform

    for attempt in range(120):
        try:
            preprocess.run(work, preprocess.PreprocessConfig(data_dir=str(SHARED / "birdclef-plus"), seed=split_seed,
                                                             nonbird_dirs=(str(SHARED / "nonbird"),)), log=lambda s: None)
            transform.run(work, [], log=lambda s: None)
            return
        except stages.StageConflict as e:
            if "in use by" not in str(e):
                raise SystemExit(str(e))
            if attempt == 0:
                print(f"waiting for another bench preparing {work}", flush=True)
            time.sleep(15)
    raise SystemExit(f"{work} stayed in use for 30 minutes; fix: stop the other bench or use another --work")


def test_recordings(work: str, birds: bool):
    """The test split's rows of `preprocess/recordings.csv`: its bird recordings, or its non-bird clips."""
    import io

    import pandas as pd

    from birdclef import fileio

    rec = pd.read_csv(io.StringIO(fileio.read_text(f"{work}/preprocess/recordings.csv")), dtype=str)
    return rec[(rec.split == "test") & ((rec.label != "nocall") if birds else (rec.label == "nocall"))]


def soundscape_f1(model, threshold: float, gate: float = 0.5) -> float:
    """Row-wise F1 on the labelled soundscape 1001_PA; `model` is `predict.load_model`'s (serve, classes, _)."""
    from birdclef import evaluate, predict
    from birdclef.data import metadata

    serve, classes, _ = model
    path = SHARED / "birdclef-plus" / "train_soundscapes" / "1001_PA_20200607.ogg"
    df = predict.predict_file(serve, classes, str(path)).set_index("row_id")
    labels = metadata.read_soundscape_labels(str(SHARED / "birdclef-plus"))
    rows = labels[labels["audio_id"].astype(str) == "1001"]
    pred = predict.label_windows(df.reindex(rows["row_id"]).fillna(0.0), classes, threshold, gate)
    return evaluate.row_f1(pred, [str(b) for b in rows["birds"]])


def window_auc(model, work: str) -> float:
    """Soundscape bird windows against non-bird test clip windows, by the `bird` column of predict."""
    from sklearn.metrics import roc_auc_score

    from birdclef import predict
    from birdclef.data import metadata

    serve, classes, _ = model
    neg = [predict.predict_file(serve, classes, p)[predict.BIRD].to_numpy()
           for p in test_recordings(work, birds=False).path]
    labels = metadata.read_soundscape_labels(str(SHARED / "birdclef-plus"))
    pos = []
    for audio_id in sorted(set(labels["audio_id"].astype(str))):
        path = next((SHARED / "birdclef-plus" / "train_soundscapes").glob(f"{audio_id}_*.ogg"))
        df = predict.predict_file(serve, classes, str(path)).set_index("row_id")
        rows = labels[labels["audio_id"].astype(str) == audio_id]
        has = rows["birds"] != "nocall"
        pos.append(df.reindex(rows["row_id"][has])[predict.BIRD].fillna(0.0).to_numpy())
    neg, pos = np.concatenate(neg), np.concatenate(pos)
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def bird_windows(model, work: str, threshold: float, gate: float) -> tuple[float, float]:
    """`predict` on the test split's bird recordings at the validation choice: (share of their 5 s windows
    given any bird, share given their own species): what the presence gate costs in recall."""
    from birdclef import predict

    serve, classes, _ = model
    heard, named, n = 0, 0, 0
    for r in test_recordings(work, birds=True).itertuples(index=False):
        for labels in predict.label_windows(predict.predict_file(serve, classes, r.path), classes, threshold, gate):
            said = set(labels.split()) - {"nocall"}
            heard, named, n = heard + bool(said), named + (r.label in said), n + 1
    return heard / max(n, 1), named / max(n, 1)


def quiet_windows(model, work: str, gate: float) -> tuple[float, float]:
    """(share of the 13 quiet hiss/silence windows, share of the test non-bird clips 40 dB quieter) whose
    bird presence reaches `gate`: what a recorder's empty night or a far-off noise costs."""
    from birdclef import audio, predict
    from birdclef.augment import NOISE_COLOURS, coloured_noise

    serve, _, _ = model
    rng = np.random.default_rng(12345)  # not the training bank's seed
    n = 5 * 32000
    hiss = [np.zeros(n, np.float32)] + [coloured_noise(n, c, rng) * 10 ** (db / 20)
                                         for c in NOISE_COLOURS for db in (-90, -75, -60, -45)]
    heard = [predict.window_scores(serve, w)[1].max() >= gate for w in hiss]
    faint = []
    for path in test_recordings(work, birds=False).path:
        wave = audio.load(path) * 10 ** (-40 / 20)
        faint.append(predict.window_scores(serve, wave)[1].max() >= gate)
    return float(np.mean(heard)), float(np.mean(faint)) if faint else float("nan")


def measure(work: str, ckpt: str) -> dict:
    """`birdclef evaluate` of a model folder, and the figures above."""
    from birdclef import evaluate, predict

    ev = evaluate.run(work, ckpt, soundscape_split="all", log=lambda s: None)
    model = predict.load_model(ckpt)  # once, for the four figures below
    th = ev["val_threshold"].get("threshold", 0.5)
    gate = ev["val_threshold"].get("presence_threshold", 0.5)
    fp = ev["nonbird_test"]["called_bird"][str(th)]
    heard, named = bird_windows(model, work, th, gate)
    quiet, faint = quiet_windows(model, work, gate)
    return {"quiet_called_bird": quiet, "faint_nonbird_called_bird": faint, "bird_windows_heard": heard, "bird_windows_named": named, "bird_top1": ev["bird_top1"], "top1_balanced": ev.get("bird_top1_balanced"), "mAP": ev["mAP"], "presence_auc": ev["chunk_presence"]["auc"],
            "presence_f1": ev["chunk_presence"]["f1"], "nonbird_called_bird": fp["share"],
            "nonbird_clips": ev["nonbird_test"]["clips"], "window_auc": window_auc(model, work),
            "f1_1001_PA": soundscape_f1(model, th, gate), "threshold": th, "presence_gate": gate}


def one_ensemble(work: str, out: str, members: list[str], reevaluate: bool = False) -> dict:
    """`birdclef ensemble` of trained seeds, measured as a model of its own."""
    from birdclef import ensemble

    done = Path(out) / "bench.json"
    if done.exists() and not reevaluate:
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    ensemble.build(members, out, overwrite=True, log=lambda s: None)
    res = {**measure(work, out), "minutes": (time.perf_counter() - t0) / 60, "members": members}
    done.write_text(json.dumps(res))
    return res


def one_run(work: str, ckpt: str, recipe: dict, seed: int, epochs: int, reevaluate: bool = False) -> dict:
    from birdclef import predict, train

    done = Path(ckpt) / "bench.json"
    cfg = train.TrainConfig(data_path=work, ckpt_dir=ckpt, epochs=epochs, seed=seed, early_stopping=0, **recipe)
    # the recipe as trained (a changed default changes what `default` means)
    config = {k: v for k, v in cfg.identity().items() if k != "data_path"}
    if done.exists():
        cached = json.loads(done.read_text())
        if cached.get("config", config) != config or cached.get("epochs", epochs) != epochs:
            raise SystemExit(f"{ckpt} holds a run of another recipe or epoch count; fix: another --work")
        if not reevaluate and "quiet_called_bird" not in cached and (Path(ckpt) / "export").exists():
            # runs measured before the quiet figures: add them (no retraining, no full evaluation)
            cached["quiet_called_bird"], cached["faint_nonbird_called_bird"] = quiet_windows(
                predict.load_model(ckpt), work, cached.get("presence_gate", 0.5))
            done.write_text(json.dumps(cached))
        if not reevaluate:
            return cached
    t0 = time.perf_counter()
    if not (reevaluate and (Path(ckpt) / "export" / "saved_model.pb").exists()):  # a trained model is not retrained
        train.run(cfg, log=lambda s: None)
    res = {**measure(work, ckpt), "minutes": (time.perf_counter() - t0) / 60, "recipe": recipe, "config": config,
           "epochs": epochs}
    done.write_text(json.dumps(res))
    return res


METRICS = ("bird_top1", "top1_balanced", "mAP", "presence_auc", "presence_f1", "nonbird_called_bird",
           "bird_windows_heard", "bird_windows_named", "window_auc", "f1_1001_PA", "quiet_called_bird",
           "faint_nonbird_called_bird", "minutes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--recipes", default="default,baseline", help="comma list, or all: " + ", ".join(recipes()))
    ap.add_argument("--work", default="/tmp/birdclef-bench-quality")
    ap.add_argument("--teacher", default="", help="a model folder (e.g. one of the --ensemble outputs) that the "
                    "recipes distill and distill-0.8 learn from (`train --teacher`)")
    ap.add_argument("--ensemble", type=int, nargs="*", default=[],
                    help="also `birdclef ensemble` each recipe's seeds in disjoint groups of this size (in the order "
                         "given; e.g. --seeds 0 1 2 3 4 5 --ensemble 3 measures {0,1,2} and {3,4,5}), each group a "
                         "row entry of '<recipe> xK', so the spread is over groups")
    ap.add_argument("--reevaluate", action="store_true",
                    help="evaluate trained models again (after a change to evaluate or predict); training resumes "
                         "its finished run, so nothing is trained again")
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[0],
                    help="`preprocess --seed` of the train/val/test split: each one holds out other recordings "
                         "(one per species in test), so a recipe's figures are also spread over which recordings "
                         "are tested; split 0 is the issue's test split. Runs of split k > 0 are '<recipe>-splitk-s<seed>'")
    args = ap.parse_args()
    book = recipes(args.teacher)
    names = list(book) if args.recipes == "all" else args.recipes.split(",")
    if args.ensemble and args.split_seeds != [0]:
        raise SystemExit("--ensemble averages the seeds of split 0; run it without --split-seeds")
    tags = {k: f"-split{k}" if k else "" for k in args.split_seeds}
    for k, tag in tags.items():
        prepare(f"{args.work}/work{tag}", k)
    work = f"{args.work}/work"  # split 0's: the ensembles' (refused above with other splits)
    rows = {}
    for name in names:
        for tag in tags.values():
            for seed in args.seeds:  # seeds inside recipes: a partial run still gives whole recipes
                r = one_run(f"{args.work}/work{tag}", f"{args.work}/{name}{tag}-s{seed}", book[name], seed,
                            args.epochs, args.reevaluate)
                rows.setdefault(name, []).append(r)
                print(f"{name}{tag} seed {seed}: " + ", ".join(f"{m} {r[m]:.3f}" for m in METRICS
                                                              if r.get(m) is not None), flush=True)
        for size in args.ensemble:
            for g in range(len(args.seeds) // size):
                group = args.seeds[g * size:(g + 1) * size]
                tag = "-".join(map(str, group))
                r = one_ensemble(work, f"{args.work}/{name}-x{size}-s{tag}",
                                 [f"{args.work}/{name}-s{s}" for s in group], args.reevaluate)
                rows.setdefault(f"{name} x{size}", []).append(r)
                print(f"{name} x{size} seeds {tag}: " + ", ".join(f"{k} {r[k]:.3f}" for k in METRICS
                                                              if r.get(k) is not None), flush=True)
    print("\n| recipe | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for name, rs in rows.items():
        cells = []
        for k in METRICS:
            v = np.array([r[k] for r in rs if r.get(k) is not None], float)
            cells.append(f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})" if len(v) else "n/a")
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
