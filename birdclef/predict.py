"""`birdclef predict`: recordings or soundscapes in, labelled 5 s windows out.

Runs an exported model (CKPT_DIR/export, a SavedModel taking raw 32 kHz audio;
see birdclef.export) over audio files or folders, local or remote. Each file is
decoded once, in blocks (bounded memory, any length), resampled to 32 kHz and
cut into 5 s windows ending at 5, 10, 15, ... s. A last partial window is kept
(zero-padded) when it holds at least MIN_TAIL_S of audio, so a file of 10.00003 s gives
two windows, not three; a file shorter than 5 s gives one. A window's score for a class is the highest score among the four
2 s chunks (1 s hop) that lie inside it, the chunks `birdclef transform` makes
of a labelled soundscape window; a chunk that is mostly zero padding (at the end
of a file) does not count (`window_scores`). The same goes for the model's bird
presence (`bird`). A window whose bird presence is >= --presence-threshold (default 0.5) is
labelled with the birds scoring >= --threshold; any other window is `nocall`. The two are apart: a
lower class threshold (more species named where a bird calls) never lets more non-bird windows
through. `--threshold val` takes the class threshold `birdclef evaluate` chose on the validation split
(CKPT_DIR/evaluation.json).

Outputs in --out:
  submission.csv   row_id,birds (BirdCLEF-2021 format; row_id = <audio_id>_<site>_<end s>
                   for files named like BirdCLEF soundscapes, else <file stem>_<end s>)
  scores.csv       one row per window: file, row_id, start_s, end_s, birds, bird (presence
                   score: some bird calls here, also one of no class), then one column per class (load in pandas, R, a spreadsheet)
  detections.csv   one row per detected bird: file, start_s, end_s, species, score
  raven/<stem>.selections.txt  Raven Pro selection tables of the detected birds
  audacity/<stem>.txt          Audacity label tracks of the same (File > Import > Labels)
                   (<stem>: the file name without extension; inputs sharing one get a hash of their path added)
  quarantine.csv   files that could not be used, with the reason and the fix
Per-file results are kept in --out/parts, so an interrupted run resumes where it
stopped; outputs made with another model or threshold are refused, not overwritten.
"""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pandas as pd

from birdclef import audio, fileio, stages
from birdclef import workers as workers_mod
from birdclef.prefetch import prefetch
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES, NOCALL, PRESENCE_THRESHOLD, AudioConfig, FeatureConfig

WINDOWS_PER_CALL = 12  # 60 s of audio per model call
MIN_TAIL_S = 1.0  # a trailing partial window needs this much audio to be labelled
BIRD = "bird"  # scores.csv column: the window's bird-presence score


class PredictError(Exception):
    pass


def as_numpy(x) -> np.ndarray:
    """A model output as numpy: TF tensors (SavedModel) and numpy arrays (ONNX Runtime) alike."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def find_export(model_path: str) -> str | None:
    """The SavedModel folder of an export dir, or of a ckpt dir holding export/ (or the path of an ONNX
    file); None if neither."""
    if str(model_path).lower().endswith(".onnx"):
        return model_path if fileio.exists(model_path) else None
    from birdclef import classify

    if classify.is_classifier(model_path):
        return model_path  # `birdclef classify`: a linear head on a base model's embeddings
    for path in (model_path, fileio.join(model_path, "export")):
        if fileio.exists(fileio.join(path, "saved_model.pb")):
            return path
    return None


def load_model(model_path: str, threads: int | None = None):
    """(serving function, class names, path) of an export dir, of a ckpt dir holding export/, or of an
    ONNX file (`birdclef export --format onnx`; served by ONNX Runtime, TensorFlow never imported).
    threads: 1 for a process whose parallelism comes from its siblings (`birdclef.workers`); None: all cores."""
    path = find_export(model_path)
    if path is None:
        raise PredictError(f"{model_path}: no exported model (saved_model.pb) here or in export/, nor an ONNX "
                           f"file; fix: pass a --ckpt-dir that `birdclef train` finished, or its model.onnx")
    from birdclef import classify

    if classify.is_classifier(path):
        return classify.load(path, threads)
    if str(path).lower().endswith(".onnx"):
        from birdclef.onnx_model import OnnxServing

        serve = OnnxServing(path, threads)
        return serve, serve.classes, path
    from birdclef.features import import_tensorflow

    tf = import_tensorflow(one_core=threads == 1)  # usually the process's first TF import: skip Keras' sklearn wrappers
    m = tf.saved_model.load(path)
    classes = [c.decode() for c in m.signatures["labels"]()["classes"].numpy()]
    return m.signatures["serving_default"], classes, path


def row_prefix(path: str) -> str:
    """<audio_id>_<site> for BirdCLEF soundscape names (<audio_id>_<site>_<date>.ogg), else the stem."""
    stem = fileio.basename(path).rsplit(".", 1)[0]
    parts = stem.split("_")
    if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
        return f"{parts[0]}_{parts[1]}"
    return stem


def row_prefixes(paths: list[str]) -> dict[str, str]:
    """row_prefix per input, made unique: inputs sharing one (a/x.ogg and b/x.ogg, or two recordings of
    one BirdCLEF audio_id and site on other dates) get a short hash of their path added, so no row_id
    of submission.csv is given twice."""
    return _unique_names({p: row_prefix(p) for p in paths})


def _unique_names(names: dict[str, str]) -> dict[str, str]:
    """path -> name, where names given to several paths get a short hash of their path added."""
    counts = pd.Series(list(names.values()), dtype=str).value_counts()
    return {p: s if counts[s] == 1 else f"{s}-{hashlib.sha1(p.encode()).hexdigest()[:8]}" for p, s in names.items()}


def n_windows(n_samples: int, cfg: FeatureConfig = DEFAULT_FEATURES) -> int:
    """How many 5 s windows a recording of n_samples gets (see the module doc)."""
    win = int(round(cfg.window_s * cfg.sample_rate))
    full, rest = divmod(n_samples, win)
    return max(1, full + (rest >= MIN_TAIL_S * cfg.sample_rate))


def windows_of(blocks, cfg: FeatureConfig = DEFAULT_FEATURES, per_call: int = WINDOWS_PER_CALL):
    """Yield (index of first window, audio of `per_call` or fewer 5 s windows) from audio blocks.

    Windows follow `n_windows`; a kept partial last window is zero-padded to 5 s."""
    win = int(round(cfg.window_s * cfg.sample_rate))
    size = win * per_call
    buf, first = np.zeros(0, np.float32), 0
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, np.float32)
        while len(buf) >= size:
            yield first, buf[:size]
            buf, first = buf[size:], first + per_call
    # what is left: whole windows, plus a partial one if it holds MIN_TAIL_S (= n_windows in total)
    full, rest = divmod(len(buf), win)
    n = full + (rest >= MIN_TAIL_S * cfg.sample_rate)
    if first == 0:
        n = max(n, 1)
    if n:
        buf = buf[:n * win]
        yield first, np.pad(buf, (0, n * win - len(buf)))


MIN_AUDIO_SHARE = 0.5  # a chunk is scored only if at least this share of it is audio, not padding


def chunk_presence(out: dict, scores: np.ndarray) -> np.ndarray:
    """Bird presence per chunk of a serving call's output: its `bird`, or for models exported before
    it existed, 1 - the score of the last class (`nocall`). scores: that output's scores as numpy."""
    return as_numpy(out["bird"]) if "bird" in out else 1.0 - scores[..., -1]


def chunk_weights(starts_s: np.ndarray, n_real: int, cfg: FeatureConfig = DEFAULT_FEATURES) -> np.ndarray:
    """Share of each chunk (start times in seconds) that is real audio when only the first n_real
    samples are; the rest is the zero padding of a last partial window."""
    chunk = cfg.chunk_s * cfg.sample_rate
    return np.clip((n_real - np.round(np.asarray(starts_s) * cfg.sample_rate)) / chunk, 0.0, 1.0)


def speaking_chunks(out: dict, n_samples: int, n_real: int | None = None,
                    cfg: FeatureConfig = DEFAULT_FEATURES) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Which chunks of a model's output on `n_samples` of audio (n_real of them audio, then zero
    padding) speak for which 5 s window: (chunk starts s [n], window of each chunk [n], use [n] bool,
    number of windows). The padding rule: a chunk counts only if it lies inside one window and at least
    MIN_AUDIO_SHARE of it is audio; in a window where no chunk reaches that (a recording shorter than
    1 s), the chunk with the most audio counts. So a chunk made mostly of padding never speaks."""
    win_s, chunk_s = cfg.window_s, cfg.chunk_s
    # chunk starts to the sample: float32 seconds drift (58.000004 s), and a drift past the window's 1e-6
    # tolerance dropped a window's last chunk in long recordings
    starts = np.round(as_numpy(out["chunk_start_s"]).astype(np.float64) * cfg.sample_rate) / cfg.sample_rate
    n_win = max(1, int(round(n_samples / (win_s * cfg.sample_rate))))
    w = np.floor(starts / win_s + 1e-6).astype(int)
    inside = starts + chunk_s <= (w + 1) * win_s + 1e-6
    share = chunk_weights(starts, n_samples if n_real is None else n_real, cfg)
    best = np.zeros(n_win)
    np.maximum.at(best, w[inside], share[inside])
    use = inside & (share > 0) & ((share >= MIN_AUDIO_SHARE) | (share >= best[np.minimum(w, n_win - 1)] - 1e-9))
    return starts, w, use, n_win


def window_scores(serve, wave: np.ndarray, cfg: FeatureConfig = DEFAULT_FEATURES,
                  n_real: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([windows, classes], [windows]): per class, and for bird presence, the max over the chunks that
    speak for each 5 s window of `wave` (`speaking_chunks`: `wave` holds n_real samples of audio, all
    of it by default, then zero padding). Bird presence is the model's `bird` output, or for models
    exported before it existed, 1 - the score of the last class (`nocall`)."""
    out = serve(waveform=np.asarray(wave, np.float32))  # a SavedModel signature or OnnxServing
    scores = as_numpy(out["scores"])
    bird = chunk_presence(out, scores)
    _, w, use, n_win = speaking_chunks(out, len(wave), n_real, cfg)
    res = np.zeros((n_win, scores.shape[1]), np.float32)
    np.maximum.at(res, w[use], scores[use])
    presence = np.zeros(n_win, np.float32)
    np.maximum.at(presence, w[use], bird[use])
    return res, presence


def predict_file(serve, classes: list[str], path: str, acfg: AudioConfig = DEFAULT_AUDIO,
                 cfg: FeatureConfig = DEFAULT_FEATURES) -> pd.DataFrame:
    """One row per 5 s window of `path`: file, row_id, start_s, end_s, bird (presence) and one column
    per class."""
    seen = [0]

    def counted(blocks):
        for b in blocks:
            seen[0] += len(b)
            yield b

    win = int(round(cfg.window_s * cfg.sample_rate))
    parts = [window_scores(serve, wave, cfg, n_real=min(len(wave), seen[0] - first * win))
             for first, wave in windows_of(counted(prefetch(audio.stream(path, acfg, allow_silent=True))), cfg)]
    scores = np.concatenate([p[0] for p in parts])
    end = (np.arange(len(scores)) + 1) * cfg.window_s
    prefix = row_prefix(path)
    df = pd.DataFrame({"file": path, "row_id": [f"{prefix}_{int(e)}" for e in end],
                       "start_s": end - cfg.window_s, "end_s": end, BIRD: np.concatenate([p[1] for p in parts])})
    return pd.concat([df, pd.DataFrame(scores, columns=classes)], axis=1)


def score_file(serve, classes: list[str], path: str, part: str, acfg: AudioConfig = DEFAULT_AUDIO,
               cfg: FeatureConfig = DEFAULT_FEATURES) -> tuple[pd.DataFrame | None, dict | None]:
    """`predict_file`, its rows kept in the part file `part` (written whole): (rows, None), or (None, the
    file's quarantine row) when it cannot be used. One process's loop and every worker process use it."""
    try:
        df = predict_file(serve, classes, path, acfg, cfg)
    except audio.AudioError as e:
        return None, {"path": path, "reason": e.reason, "message": str(e)}
    fileio.write_text_atomic(part, df.to_csv(index=False, float_format="%.5f"))
    return df, None


def _bird_hits(scores: pd.DataFrame, classes: list[str], threshold: float,
               presence: float = PRESENCE_THRESHOLD) -> list[list[tuple[str, float]]]:
    """Per window, the (bird, score) pairs scoring >= threshold, in class order; none where the
    window's bird presence (column `bird`, where given) is below `presence`. The class threshold does
    not move the presence gate: evaluate's validation sweep once chose 0.1 for the class scores, which
    as a presence gate as well called 41 % of non-bird test clips birds."""
    birds = [c for c in classes if c != NOCALL]
    values = scores[birds].to_numpy() if birds else np.zeros((len(scores), 0))
    present = scores[BIRD].to_numpy() >= presence if BIRD in scores else np.ones(len(scores), bool)
    return [[(b, float(v)) for b, v in zip(birds, row) if v >= threshold] if p else []
            for row, p in zip(values, present)]


def label_windows(scores: pd.DataFrame, classes: list[str], threshold: float,
                  presence: float = PRESENCE_THRESHOLD) -> list[str]:
    """Space-separated birds with score >= threshold per window where a bird is present, else 'nocall'."""
    return [" ".join(b for b, _ in hits) or NOCALL for hits in _bird_hits(scores, classes, threshold, presence)]


def detections(scores: pd.DataFrame, classes: list[str], threshold: float,
               presence: float = PRESENCE_THRESHOLD) -> pd.DataFrame:
    """One row per (window, bird scoring >= threshold where a bird is present): file (if given),
    start_s, end_s, species, score."""
    keys = [k for k in ("file", "start_s", "end_s") if k in scores]
    rows = [(*key, b, v) for key, hits in zip(scores[keys].itertuples(index=False, name=None),
                                               _bird_hits(scores, classes, threshold, presence)) for b, v in hits]
    return pd.DataFrame(rows, columns=[*keys, "species", "score"])


def raven_rows(det: pd.DataFrame, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    """Raven Pro selection table (tab-separated) of `detections` rows."""
    lines = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\tScore"]
    for n, d in enumerate(det.itertuples(index=False), 1):
        lines.append(f"{n}\tSpectrogram 1\t1\t{d.start_s:.3f}\t{d.end_s:.3f}\t{cfg.fmin:.1f}\t{cfg.fmax:.1f}\t"
                     f"{d.species}\t{d.score:.4f}")
    return "\n".join(lines) + "\n"


def audacity_rows(det: pd.DataFrame) -> str:
    """Audacity label track (start, end, 'species score', tab-separated) of `detections` rows."""
    return "".join(f"{d.start_s:.3f}\t{d.end_s:.3f}\t{d.species} {d.score:.3f}\n" for d in det.itertuples(index=False))


def output_stems(paths: list[str]) -> dict[str, str]:
    """A file name stem per input for per-file outputs; inputs sharing a stem (a/x.ogg, b/x.wav)
    get a short hash of their path added, so one file's table never overwrites another's."""
    return _unique_names({p: fileio.basename(p).rsplit(".", 1)[0] for p in paths})


def input_files(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Audio files named directly or found (recursively) in folders, each once, spelled as given (a
    relative folder gives paths relative to where the command runs, so scores.csv and detections.csv
    travel with the data): a file reached twice (named and inside a named folder, or by two spellings
    of its path) keeps its first spelling.
    Returns (files, the later spellings left out)."""
    files, seen, twice = [], set(), []
    for p in inputs:
        if any(p.lower().endswith(s) for s in audio.AUDIO_SUFFIXES):
            found = [p]
        else:
            found = fileio.list_files(p, audio.AUDIO_SUFFIXES) if fileio.exists(p) else []
            if found and not fileio.is_remote(p):  # in the user's spelling: a relative folder gives relative paths
                root = os.path.abspath(p)
                found = [os.path.join(p, os.path.relpath(f, root)) for f in found]
            found = found or [p]  # a missing path is reported per file, below
        for f in found:
            key = f if fileio.is_remote(f) else os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
            else:
                twice.append(f)
    return files, twice


def model_fingerprint(serve, cfg: FeatureConfig = DEFAULT_FEATURES) -> str:
    """Identity of a model by what it does: a hash of its rounded scores on a fixed probe signal.

    A re-export of the same weights keeps it (the SavedModel bytes do not); a retrained model changes it."""
    probe = np.random.default_rng(12345).standard_normal(int(3 * cfg.sample_rate)).astype(np.float32) * 0.1
    out = serve(waveform=probe)
    # the embedding too: scores alone can be all but 0 or 1 on the probe, and the same for two models
    answer = [as_numpy(out[k]) for k in ("scores", "embedding") if k in out]
    return hashlib.sha1(b"".join(np.round(a, 3).astype(np.float32).tobytes() for a in answer)).hexdigest()


def val_threshold(model_path: str, export_dir: str) -> float:
    """The class threshold `birdclef evaluate` chose on the validation split (its evaluation.json)."""
    return val_choice(model_path, export_dir)[0]


def val_choice(model_path: str, export_dir: str) -> tuple[float, float]:
    """(class threshold, bird-presence gate) `birdclef evaluate` chose on the validation split; the gate
    is PRESENCE_THRESHOLD in evaluations written before it was chosen."""
    import json

    places = [model_path, fileio.dirname(export_dir.rstrip("/"))]
    for place in places:
        path = fileio.join(place, "evaluation.json")
        if fileio.exists(path):
            chosen = json.loads(fileio.read_text(path)).get("val_threshold", {})
            if chosen.get("threshold") is None:
                raise PredictError(f"{path} holds no threshold chosen on validation data "
                                   f"({chosen.get('source', 'written by an older birdclef')}); "
                                   f"fix: pass --threshold 0.5 (or another number), or rerun `birdclef evaluate`")
            return float(chosen["threshold"]), float(chosen.get("presence_threshold", PRESENCE_THRESHOLD))
    raise PredictError(f"--threshold val: no evaluation.json in {' or '.join(dict.fromkeys(places))}; "
                       f"fix: run `birdclef evaluate {model_path} --work-dir W` first, or pass a number")


def run(model_path: str, inputs: list[str], out: str, threshold: float | str = 0.5,
        acfg: AudioConfig = DEFAULT_AUDIO, cfg: FeatureConfig = DEFAULT_FEATURES, log=print,
        presence: float | None = None, workers: int | str = "auto") -> dict:
    """threshold: a class score in (0, 1], or "val" for the one `birdclef evaluate` chose on validation
    data; presence: the bird presence a window needs to be labelled with birds (None: the gate evaluate
    chose on validation data with --threshold val, else PRESENCE_THRESHOLD); workers: processes the
    files are spread over (`birdclef.workers`; "auto": one per core for an ONNX model and enough files)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if threshold != "val" and not 0.0 < float(threshold) <= 1.0:
        raise PredictError(f"--threshold {threshold} must be in (0, 1], or val")
    if presence is not None and not 0.0 < float(presence) < 1.0:
        raise PredictError(f"--presence-threshold {presence} must be in (0, 1)")
    serve, classes, export_dir = load_model(model_path)
    if threshold == "val":
        threshold, val_gate = val_choice(model_path, export_dir)
        presence = val_gate if presence is None else presence
        log(f"predict: class threshold {threshold} and bird-presence gate {presence}, chosen on validation data "
            "by `birdclef evaluate`")
    threshold = float(threshold)
    presence = PRESENCE_THRESHOLD if presence is None else float(presence)
    files, twice = input_files(inputs)
    if twice:
        log(f"predict: {len(twice)} input(s) reached twice read once: {', '.join(twice[:3])}"
            f"{' ...' if len(twice) > 3 else ''}")
    if not files:
        raise PredictError(f"no audio files ({', '.join(audio.AUDIO_SUFFIXES)}) in {', '.join(inputs)}")
    params = {"model": export_dir, "model_fingerprint": model_fingerprint(serve, cfg), "threshold": threshold,
              "presence_threshold": presence, "classes": classes}
    fileio.makedirs(out)
    try:
        with stages.locked(out, "birdclef predict"):
            return _predict(serve, classes, files, out, params, threshold, acfg, cfg, log, presence, model_path, workers)
    except stages.StageConflict as e:
        raise PredictError(str(e)) from e


def _predict(serve, classes, files, out, params, threshold, acfg, cfg, log, presence=PRESENCE_THRESHOLD,
             model_path: str = "", workers: int | str = 1) -> dict:
    try:
        stages.claim(fileio.join(out, "predict.json"), params, "predictions", "choose another --out")
    except stages.StageConflict as e:
        raise PredictError(str(e)) from e

    from tqdm import tqdm

    def part_of(path: str) -> str:
        return fileio.join(out, "parts", hashlib.sha1(path.encode()).hexdigest()[:16] + ".csv")

    def read_part(path: str) -> pd.DataFrame:
        df = pd.read_csv(io.StringIO(fileio.read_text(part_of(path))), keep_default_na=False)
        if BIRD not in df:  # a part written by an older birdclef
            df.insert(4, BIRD, chunk_presence({}, df[classes].to_numpy()))
        return df

    done = {p for p in files if fileio.exists(part_of(p))}
    pending = [p for p in files if p not in done]
    n_workers = workers_mod.auto_workers(model_path, len(pending)) if workers == "auto" else int(workers)
    n_workers = max(1, min(n_workers, len(pending)))
    if any(str(p).startswith("memory://") for p in [out, *pending]):
        n_workers = 1  # an in-process file system: other processes cannot see it
    scored, quarantined = {}, []
    bar = tqdm(total=len(pending), desc="predict", unit="file", disable=None, leave=False)
    if n_workers > 1:
        log(f"predict: {len(pending)} files over {n_workers} worker processes")
        try:
            for path, bad in workers_mod.score_files(model_path, [(p, part_of(p)) for p in pending], n_workers,
                                                     acfg, cfg):
                if bad:
                    quarantined.append(bad)
                    log(f"predict: skipped {bad['message']}")
                bar.update()
        except workers_mod.WorkerDied as e:
            raise PredictError(f"predict --out {out}: {e}") from e
    else:
        for path in pending:
            df, bad = score_file(serve, classes, path, part_of(path), acfg, cfg)
            if bad:
                quarantined.append(bad)
                log(f"predict: skipped {bad['message']}")
            else:
                scored[path] = df
            bar.update()
    bar.close()
    bad_paths = {q["path"] for q in quarantined}
    results = [scored[p] if p in scored else read_part(p) for p in files if p not in bad_paths]
    resumed = len(done)
    if quarantined:
        fileio.write_text(fileio.join(out, "quarantine.csv"), pd.DataFrame(quarantined).to_csv(index=False))
    if not results:
        raise PredictError(f"none of the {len(files)} input files could be used; see {out}/quarantine.csv")
    scores = pd.concat(results, ignore_index=True)
    prefixes = row_prefixes(list(scores["file"].unique()))
    scores["row_id"] = scores["file"].map(prefixes) + "_" + scores["end_s"].round().astype(int).astype(str)
    scores.insert(4, "birds", label_windows(scores, classes, threshold, presence))
    fileio.write_text(fileio.join(out, "scores.csv"), scores.to_csv(index=False, float_format="%.5f"))
    fileio.write_text(fileio.join(out, "submission.csv"), scores[["row_id", "birds"]].to_csv(index=False))
    det = detections(scores, classes, threshold, presence)  # once: the CSV and every file's tables come from it
    fileio.write_text(fileio.join(out, "detections.csv"), det.to_csv(index=False, float_format="%.5f"))
    per_file = dict(tuple(det.groupby("file", sort=False)))
    for path, stem in output_stems(list(scores["file"].unique())).items():
        mine = per_file.get(path, det.iloc[:0])  # a file without detections gets empty tables
        fileio.write_text(fileio.join(out, "raven", f"{stem}.selections.txt"), raven_rows(mine, cfg))
        fileio.write_text(fileio.join(out, "audacity", f"{stem}.txt"), audacity_rows(mine))
    summary = {"files": len(files), "predicted": len(results), "resumed": resumed, "quarantined": len(quarantined),
               "windows": int(len(scores)), "windows_with_birds": int((scores["birds"] != NOCALL).sum()),
               "out": out}
    log(f"predict: {summary['predicted']} of {len(files)} files ({resumed} from an earlier run), "
        f"{summary['windows']} windows, {summary['windows_with_birds']} with birds; {len(quarantined)} skipped; "
        f"outputs in {out}")
    return summary
