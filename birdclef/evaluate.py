"""`birdclef evaluate`: how good is each trained model, measured the way users will run it.

Every number comes from the exported model (CKPT_DIR/export, raw audio in, as
`birdclef predict` runs it) on data the model never trained on:

Test-split recordings (WORK_DIR/preprocess/recordings.csv, split == test), per 2 s chunk:
  accuracy            top-1 of the class scores against the recording's label
  balanced_accuracy   mean per-class recall (a big `nocall` class cannot hide the birds)
  mAP                 macro average precision over the classes present (one-vs-rest on scores)
  recording_accuracy  top-1 of the mean chunk scores, per recording
Labelled soundscapes of the chosen split (default test), per 5 s window, birds = classes
with a window score >= threshold, else `nocall` (exactly `birdclef predict`):
  row_f1              BirdCLEF-2021 metric: per row, F1 of the predicted vs true label sets
                      (`nocall` counts as a label), averaged over rows ("row-wise micro F1")
  row_f1_all_nocall   the same for a model that always answers nocall: the floor to beat
  detection_precision, detection_recall  of "a bird calls in this window" (any bird vs nocall)
  birds_not_in_classes  labelled birds the model was not trained on (reported, not hidden)
  threshold_sweep     row_f1 and detection precision/recall at other thresholds
Validation split (never the test split), to choose `predict --threshold`:
  val_threshold       the threshold of SWEEP with the best row-wise F1 on the val split's labelled
                      soundscape windows, or, where the val split has none, on its recordings' 2 s
                      chunks (each chunk's truth: its recording's label, `nocall` for non-bird audio);
                      ties go to the threshold nearest 0.5. `predict --threshold val` uses it.
  at_val_threshold    the test soundscape metrics at that threshold (an honest figure: chosen on val)
Also per chunk of the test recordings: detection precision/recall of bird vs non-bird audio, and
  per_class           per class: support, AP, top-1 precision/recall/F1, the class it is most often
                      mistaken for; weakest AP first (also CKPT_DIR/per_class.csv)

Writes CKPT_DIR/evaluation.json per model and CKPT_DIR/report/ (report.md with the tables and
plots, `birdclef.report`); `birdclef compare` shows the models side by side.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from birdclef import audio, fileio
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES, NOCALL, PRESENCE_THRESHOLD, AudioConfig, FeatureConfig


SWEEP = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class EvaluateError(Exception):
    pass


def row_f1(pred: list[str], true: list[str]) -> float:
    """BirdCLEF-2021 row-wise micro F1: mean over rows of F1(predicted set, true set); nocall is a label."""
    scores = []
    for p, t in zip(pred, true):
        ps, ts = set(p.split()), set(t.split())
        scores.append(2 * len(ps & ts) / (len(ps) + len(ts)) if ps or ts else 1.0)
    return float(np.mean(scores)) if scores else float("nan")


def precision_recall(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    tp = int((pred & true).sum())
    precision = tp / int(pred.sum()) if pred.any() else float("nan")
    recall = tp / int(true.sum()) if true.any() else float("nan")
    return precision, recall


def mean_average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """Macro average precision over the classes that have at least one positive."""
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(y == c, scores[:, c]) for c in np.unique(y)]
    return float(np.mean(aps)) if aps else float("nan")


def per_class(scores: np.ndarray, y: np.ndarray, classes: list[str]) -> list[dict]:
    """Per class, over test chunks (truth: the recording's label; prediction: the top class):
    support (chunks of that class), AP (one-vs-rest on its score), precision, recall and F1 of the
    top-1 prediction, and the class its chunks are most often mistaken for. Classes with neither
    a chunk nor a prediction are left out; AP and recall are None without support, precision None
    when never predicted. Weakest AP first, so the species a model fails on lead the list."""
    from sklearn.metrics import average_precision_score

    pred = scores.argmax(1)
    out = []
    for c, name in enumerate(classes):
        truth, said = y == c, pred == c
        if not truth.any() and not said.any():
            continue
        tp = int((truth & said).sum())
        precision = tp / int(said.sum()) if said.any() else None
        recall = tp / int(truth.sum()) if truth.any() else None
        f1 = (2 * precision * recall / (precision + recall) if precision and recall else
              (0.0 if precision is not None and recall is not None else None))
        wrong = pred[truth & ~said]
        confused = np.bincount(wrong, minlength=len(classes)).argmax() if len(wrong) else None
        out.append({"class": name, "support": int(truth.sum()),
                    "AP": float(average_precision_score(truth, scores[:, c])) if truth.any() else None,
                    "precision": precision, "recall": recall, "f1": f1,
                    "most_confused_with": classes[confused] if confused is not None else None,
                    "confused_chunks": int((wrong == confused).sum()) if confused is not None else 0})
    return sorted(out, key=lambda r: (r["AP"] is None, r["AP"] if r["AP"] is not None else 0.0, r["class"]))


def confusion(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Chunk counts by (true class, top-1 class), over the classes that are a truth or a prediction."""
    used = sorted(set(y.tolist()) | set(pred.tolist()))
    pos = {c: i for i, c in enumerate(used)}
    counts = np.zeros((len(used), len(used)), int)
    np.add.at(counts, ([pos[c] for c in y], [pos[c] for c in pred]), 1)
    return {"classes": [classes[c] for c in used], "counts": counts.tolist()}


def _csv(path: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(fileio.read_text(path)), dtype=str, keep_default_na=False)


def score_recordings(serve, classes: list[str], recordings: pd.DataFrame, acfg: AudioConfig = DEFAULT_AUDIO,
                     with_bird: bool = False):
    """Chunk scores of recordings whose label is a class: (scores [n, classes], class index per chunk,
    recording id per chunk, skipped recordings with the reason[, bird presence per chunk])."""
    from birdclef import predict

    index = {c: i for i, c in enumerate(classes)}
    all_scores, ys, ids, skipped, birds = [], [], [], [], []
    for r in recordings.itertuples(index=False):
        if r.label not in index:
            skipped.append(f"{r.recording_id}: label {r.label} is not a class of this model")
            continue
        try:
            wave = audio.load(r.path, acfg)
        except audio.AudioError as e:
            skipped.append(str(e))
            continue
        out = serve(waveform=wave)  # a SavedModel signature or predict's OnnxServing
        s = predict.as_numpy(out["scores"])
        all_scores.append(s)
        birds.append(predict.chunk_presence(out, s))
        ys.append(np.full(len(s), index[r.label]))
        ids += [r.recording_id] * len(s)
    if not all_scores:
        res = np.zeros((0, len(classes)), np.float32), np.zeros(0, int), ids, skipped
        return (*res, np.zeros(0, np.float32)) if with_bird else res
    res = np.concatenate(all_scores), np.concatenate(ys), ids, skipped
    return (*res, np.concatenate(birds)) if with_bird else res


def presence(bird: np.ndarray, is_bird: np.ndarray, threshold: float) -> dict:
    """Bird presence scores against the truth: ROC AUC (None without both sides), and precision,
    recall and F1 of `bird >= threshold`."""
    from sklearn.metrics import roc_auc_score

    said = np.asarray(bird) >= threshold
    p, r = precision_recall(said, is_bird)
    f1 = 2 * p * r / (p + r) if p == p and r == r and p + r > 0 else (0.0 if p == p and r == r else float("nan"))
    both = bool(is_bird.any() and (~is_bird).any())
    return {"auc": float(roc_auc_score(is_bird, bird)) if both else None, "precision": p, "recall": r, "f1": f1,
            "n": int(len(is_bird)), "positives": int(is_bird.sum())}


def bird_top1(scores: np.ndarray, y: np.ndarray, classes: list[str]) -> tuple[float, float]:
    """Top bird class (nocall not a choice, as predict names birds) against the truth of bird chunks:
    (share of bird chunks right, mean over bird classes of their chunks' share right). The second counts
    every species once, however long its test recordings: with one test recording per species, the first
    is mostly decided by the few longest recordings."""
    nocall = classes.index(NOCALL) if NOCALL in classes else None
    birds = y != nocall
    cols = np.array([i for i, c in enumerate(classes) if c != NOCALL])
    if not birds.any() or not len(cols):
        return float("nan"), float("nan")
    right = cols[scores[birds][:, cols].argmax(1)] == y[birds]
    per_class = pd.Series(right).groupby(y[birds]).mean()
    return float(right.mean()), float(per_class.mean())


def chunk_metrics(serve, classes: list[str], recordings: pd.DataFrame, threshold: float,
                  acfg: AudioConfig = DEFAULT_AUDIO, presence_gate: float = PRESENCE_THRESHOLD) -> dict:
    from birdclef import predict

    scores, y, ids, skipped, bird = score_recordings(serve, classes, recordings, acfg, with_bird=True)
    if not len(y):
        return {"test_chunks": 0, "skipped": skipped}
    pred = scores.argmax(1)
    per_rec = pd.DataFrame(scores).groupby(np.array(ids), sort=False).mean()
    rec_true = pd.Series(y).groupby(np.array(ids), sort=False).first()
    rec_pred = per_rec.to_numpy().argmax(1)
    nocall = classes.index(NOCALL) if NOCALL in classes else None
    # bird vs not by the rule `predict` labels windows with (bird presence, then the class scores)
    table = pd.DataFrame(scores, columns=classes).assign(**{predict.BIRD: bird})
    det_pred = np.array([b != NOCALL for b in predict.label_windows(table, classes, threshold, presence_gate)])
    p, r = precision_recall(det_pred, y != nocall)
    birds = y != nocall
    top1, top1_balanced = bird_top1(scores, y, classes)
    return {
        "test_chunks": int(len(y)), "test_recordings": int(len(rec_true)),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)])),
        # the species of bird chunks: the top bird class (nocall not a choice), as predict names birds
        "bird_top1": top1, "bird_top1_balanced": top1_balanced,
        "mAP": mean_average_precision(scores, y),
        "bird_mAP": mean_average_precision(scores[birds], y[birds]) if birds.any() else float("nan"),
        "recording_accuracy": float(np.mean(rec_pred == rec_true.loc[per_rec.index].to_numpy())),
        "chunk_detection_precision": p, "chunk_detection_recall": r,
        # bird presence per chunk: bird recordings' chunks against non-bird ones
        "chunk_presence": presence(bird, birds, threshold),
        "per_class": per_class(scores, y, classes),
        # rows: true class, columns: top-1 class, over the classes that occur in either
        "confusion": confusion(y, pred, classes),
        "skipped": skipped,
    }


def nonbird_false_positives(serve, classes: list[str], recordings: pd.DataFrame, thresholds: list[float],
                            acfg: AudioConfig = DEFAULT_AUDIO, cfg: FeatureConfig = DEFAULT_FEATURES,
                            presence_gate: float = PRESENCE_THRESHOLD) -> dict:
    """Non-bird clips (label nocall) run through `predict` as a user would: the share of clips with a
    bird label in any 5 s window, per class threshold (bird presence gated at presence_gate), and the
    clips (with the bird they got) at the first."""
    from birdclef import predict

    clips = recordings[recordings["label"] == NOCALL]
    per_clip = []
    for r in clips.itertuples(index=False):
        try:
            per_clip.append((r.recording_id, predict.predict_file(serve, classes, r.path, acfg, cfg)))
        except audio.AudioError:
            continue
    if not per_clip:
        return {"clips": 0}
    out = {"clips": len(per_clip), "presence_threshold": presence_gate, "called_bird": {}}
    for th in thresholds:
        called = [(rid, labels) for rid, df in per_clip
                  for labels in [sorted({b for w in predict.label_windows(df, classes, th, presence_gate) for b in w.split()}
                                        - {NOCALL})] if labels]
        out["called_bird"][str(th)] = {"share": len(called) / len(per_clip), "n": len(called),
                                       "examples": [f"{rid} -> {' '.join(lab)}" for rid, lab in called[:10]]}
    return out


def choose_threshold(sweep: list[dict]) -> dict:
    """The sweep entry with the best row_f1; ties go to the threshold nearest 0.5 (the default)."""
    usable = [x for x in sweep if x["row_f1"] == x["row_f1"]]  # not NaN
    if not usable:
        return {}
    return max(usable, key=lambda x: (x["row_f1"], -abs(x["threshold"] - 0.5)))


def chunk_sweep(scores: np.ndarray, y: np.ndarray, classes: list[str], bird: np.ndarray | None = None,
                presence_gate: float = PRESENCE_THRESHOLD) -> list[dict]:
    """Row-wise F1 of chunks labelled by `predict`'s rule at each SWEEP threshold (truth: one label per chunk;
    bird: the chunks' bird presence, which `predict` labels with too)."""
    from birdclef import predict

    df, true = pd.DataFrame(scores, columns=classes), [classes[i] for i in y]
    if bird is not None:
        df[predict.BIRD] = bird
    return [{"threshold": t, "row_f1": row_f1(predict.label_windows(df, classes, t, presence_gate), true)}
            for t in SWEEP]


PRESENCE_SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
TARGET_NONBIRD_FP = 0.05  # share of the val split's non-bird clips a bird may be heard in


def presence_gate_on_val(serve, classes: list[str], recordings: pd.DataFrame, acfg: AudioConfig = DEFAULT_AUDIO,
                         cfg: FeatureConfig = DEFAULT_FEATURES) -> dict:
    """The bird-presence gate of `predict --threshold val`: the lowest of PRESENCE_SWEEP at which at most
    TARGET_NONBIRD_FP of the val split's non-bird clips have a window with presence at or above it
    (never below 0.5: a gate is only raised where validation audio shows false alarms). Without val
    non-bird clips: 0.5."""
    from birdclef import predict

    clips = recordings[(recordings["split"] == "val") & (recordings["label"] == NOCALL)]
    peaks = []
    for r in clips.itertuples(index=False):
        try:
            peaks.append(float(predict.predict_file(serve, classes, r.path, acfg, cfg)[predict.BIRD].max()))
        except audio.AudioError:
            continue
    if not peaks:
        return {"presence_threshold": PRESENCE_THRESHOLD, "presence_source": "default: no val non-bird clips"}
    peaks = np.asarray(peaks)
    gate = next((t for t in PRESENCE_SWEEP if (peaks >= t).mean() <= TARGET_NONBIRD_FP), PRESENCE_SWEEP[-1])
    return {"presence_threshold": gate, "presence_source": f"val non-bird clips ({len(peaks)})",
            "val_nonbird_heard": float((peaks >= gate).mean()), "target_nonbird_heard": TARGET_NONBIRD_FP}


def val_threshold(serve, classes: list[str], work_dir: str, data_dir: str, recordings: pd.DataFrame,
                  acfg: AudioConfig = DEFAULT_AUDIO, windows: dict | None = None, gate: dict | None = None) -> dict:
    """`predict --threshold val`: the bird-presence gate (`presence_gate_on_val`), then the class threshold
    with the best row-wise F1 behind that gate on the val split's soundscape windows, else on its
    recordings' chunks.

    windows: `window_metrics` of the val split behind that gate if already computed (its sweep does not depend
    on its threshold); gate: `presence_gate_on_val` if already computed."""
    gate = gate or presence_gate_on_val(serve, classes, recordings, acfg)
    p = gate["presence_threshold"]
    if windows is None or windows.get("presence_threshold") != p:
        windows = window_metrics(serve, classes, work_dir, data_dir, "val", 0.5, acfg, presence_gate=p)
    if windows.get("soundscape_windows"):
        best = choose_threshold(windows["threshold_sweep"])
        return {**best, **gate, "source": "val soundscape windows", "n": windows["soundscape_windows"]}
    scores, y, _, _, bird = score_recordings(serve, classes, recordings[recordings["split"] == "val"], acfg,
                                             with_bird=True)
    if not len(y):
        return {**gate, "source": "none: the val split has no labelled soundscape windows and no usable recordings"}
    best = choose_threshold(chunk_sweep(scores, y, classes, bird, p))
    return {**best, **gate, "source": "val recording chunks", "n": int(len(y))}


def window_metrics(serve, classes: list[str], work_dir: str, data_dir: str, split: str, threshold: float,
                   acfg: AudioConfig = DEFAULT_AUDIO, cfg: FeatureConfig = DEFAULT_FEATURES,
                   presence_gate: float = PRESENCE_THRESHOLD) -> dict:
    from birdclef import predict
    from birdclef.data import metadata

    pre = fileio.join(work_dir, "preprocess")
    sc = _csv(fileio.join(pre, "soundscapes.csv"))
    if split != "all":
        sc = sc[sc["split"] == split]
    if not len(sc):
        return {"soundscape_windows": 0, "soundscape_split": split, "presence_threshold": presence_gate}
    labels = metadata.read_soundscape_labels(data_dir)
    scored, true = [], []
    for r in sc.itertuples(index=False):
        df = predict.predict_file(serve, classes, r.path, acfg, cfg).set_index("row_id")
        rows = labels[(labels["audio_id"].astype(str) == str(r.audio_id)) & (labels["site"] == r.site)]
        # a labelled window past the audio's end counts as answered `nocall` (all scores 0)
        scored.append(df.reindex(rows["row_id"])[[predict.BIRD, *classes]].fillna(0.0))
        true += [" ".join(sorted(str(b).split())) for b in rows["birds"]]
    scores = pd.concat(scored, ignore_index=True)
    unknown = sorted({b for t in true for b in t.split()} - set(classes))
    has_bird = np.array([t != NOCALL for t in true])

    def at(th: float) -> dict:
        pred = predict.label_windows(scores, classes, th, presence_gate)
        p, r = precision_recall(np.array([x != NOCALL for x in pred]), has_bird)
        return {"row_f1": row_f1(pred, true), "detection_precision": p, "detection_recall": r}

    return {"soundscape_split": split, "presence_threshold": presence_gate, "soundscapes": int(len(sc)),
            "soundscape_windows": len(true),
            "windows_with_birds": int(has_bird.sum()), **at(threshold),
            # bird presence per window, whatever the species (also those of no class); AUC needs both kinds
            "window_presence": presence(scores[predict.BIRD].to_numpy(), has_bird, threshold),
            "row_f1_all_nocall": row_f1([NOCALL] * len(true), true),
            # birds in the labels that the model has no class for: no model can get those rows right
            "birds_not_in_classes": unknown,
            # the same at other thresholds, to choose `predict --threshold` (on a split not used to report)
            "threshold_sweep": [{"threshold": t, **at(t)} for t in SWEEP]}


def _num(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def run(work_dir: str, ckpt_dir: str, threshold: float = 0.5, soundscape_split: str = "test", log=print) -> dict:
    from birdclef import predict, stages

    pre = fileio.join(work_dir, "preprocess")
    marker = stages.marker(pre)
    if not fileio.exists(marker):
        raise EvaluateError(f"{pre} holds no finished preprocess; fix: pass the --work-dir that `birdclef "
                            f"preprocess` and `birdclef train --data-path` used")
    data_dir = json.loads(fileio.read_text(marker))["params"]["data_dir"]
    try:
        serve, classes, export_dir = predict.load_model(ckpt_dir)
    except predict.PredictError as e:
        raise EvaluateError(str(e)) from e
    rec = _csv(fileio.join(pre, "recordings.csv"))
    test = rec[rec["split"] == "test"]
    # the val choices first: the test split is then measured behind the presence gate chosen on val
    val_gate = presence_gate_on_val(serve, classes, rec)
    gate = val_gate["presence_threshold"]
    windows = window_metrics(serve, classes, work_dir, data_dir, soundscape_split, threshold, presence_gate=gate)
    # --soundscapes val: the val windows were just scored behind the gate, do not predict them again
    chosen_val = val_threshold(serve, classes, work_dir, data_dir, rec, gate=val_gate,
                               windows=windows if soundscape_split == "val" else None)
    result = {"ckpt_dir": ckpt_dir, "export": export_dir, "threshold": threshold, "presence_threshold": gate,
              "classes": classes, **chunk_metrics(serve, classes, test, threshold, presence_gate=gate), **windows,
              "val_threshold": chosen_val}
    chosen = result["val_threshold"].get("threshold")
    result["nonbird_test"] = nonbird_false_positives(
        serve, classes, test, list(dict.fromkeys([threshold] + ([chosen] if chosen is not None else []))),
        presence_gate=gate)
    at = next((x for x in result.get("threshold_sweep", []) if x["threshold"] == chosen), None)
    if at is not None:
        result["at_val_threshold"] = at
    fileio.write_json(fileio.join(ckpt_dir, "evaluation.json"), result)
    if result.get("per_class"):
        fileio.write_text(fileio.join(ckpt_dir, "per_class.csv"),
                          pd.DataFrame(result["per_class"]).to_csv(index=False, float_format="%.4f"))
    from birdclef import report

    report_path = report.write(result, fileio.join(ckpt_dir, "report"))
    for s in result.get("skipped", []):
        log(f"evaluate: skipped {s}")
    if result.get("birds_not_in_classes"):
        log(f"evaluate: note: the soundscape labels name birds this model has no class for "
            f"({', '.join(result['birds_not_in_classes'])}); row-wise F1 cannot credit those")
    log(f"evaluate: {ckpt_dir}: accuracy {result.get('accuracy', float('nan')):.3f}, "
        f"mAP {result.get('mAP', float('nan')):.3f} on {result.get('test_chunks', 0)} test chunks; "
        f"row-wise F1 {result.get('row_f1', float('nan')):.3f} (all-nocall {result.get('row_f1_all_nocall', float('nan')):.3f}) "
        f"on {result.get('soundscape_windows', 0)} soundscape windows")
    cp, wp = result.get("chunk_presence") or {}, result.get("window_presence") or {}
    if cp:
        log(f"evaluate: bird presence on test chunks: AUC {_num(cp.get('auc'))}, F1 {_num(cp.get('f1'))} "
            f"at {threshold} ({cp['positives']} bird of {cp['n']} chunks)"
            + (f"; on soundscape windows: AUC {_num(wp.get('auc'))}, F1 {_num(wp.get('f1'))} "
               f"({wp['positives']} with birds of {wp['n']})" if wp else ""))
    for th, fp in (result["nonbird_test"].get("called_bird") or {}).items():
        log(f"evaluate: non-bird test clips given a bird label at {th}: {fp['n']} of "
            f"{result['nonbird_test']['clips']} ({fp['share']:.1%})")
    weak = [c for c in result.get("per_class", []) if c["AP"] is not None][:3]
    if weak:
        log("evaluate: weakest classes (test chunk AP): " + ", ".join(
            f"{c['class']} {c['AP']:.3f} ({c['support']} chunks"
            + (f", mostly taken for {c['most_confused_with']})" if c["most_confused_with"] else ")") for c in weak)
            + f"; all classes in {fileio.join(ckpt_dir, 'per_class.csv')}")
    log(f"evaluate: report with plots: {report_path}")
    vt = result["val_threshold"]
    if chosen is not None:
        log(f"evaluate: threshold chosen on the {vt['source']} ({vt['n']}): {chosen} (row-wise F1 there "
            f"{vt['row_f1']:.3f}); `birdclef predict --threshold val` uses it"
            + (f"; test row-wise F1 at it {at['row_f1']:.3f}" if at is not None else ""))
    else:
        log(f"evaluate: no threshold chosen on val ({vt['source']})")
    return result
