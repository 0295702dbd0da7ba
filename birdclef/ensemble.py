"""Several trained models served as one (`birdclef ensemble`): the mean of their class scores and bird
presence, their embeddings side by side.

    birdclef ensemble RUN_A RUN_B RUN_C --out E
    birdclef evaluate E --work-dir W        # and predict, embed, compare, export --format onnx

Models trained on the same data with other seeds (or recipes, or architectures) make different mistakes;
averaging their probabilities is how the BirdCLEF winners' entries were built, and on birdclef-plus it
gains more bird top-1 than any single-model recipe screened (docs/results.md). The members must have the
same classes in the same order and the same feature settings; each keeps its own TF Transform
normalisation. E is self-contained: the members' weights, run settings and normalisation are copied
into E/members/, so the runs they came from can be moved or deleted. E/export is a SavedModel with the
signatures of a training run's (`birdclef.export`), E/run.json names the members, E/metrics.json lets
`birdclef compare` list it. Inference costs the members' sum.
"""
from __future__ import annotations

import io

import numpy as np

from birdclef import fileio
from birdclef.config import DEFAULT_FEATURES, FeatureConfig

KIND = "ensemble"


class EnsembleError(Exception):
    pass


def _run(ckpt_dir: str) -> dict | None:
    run = fileio.read_json(fileio.join(ckpt_dir, "run.json"))
    return run if isinstance(run, dict) else None


def is_finished(ckpt_dir: str) -> bool:
    """A folder `birdclef train` or `birdclef ensemble` finished: run.json and export/ (no TensorFlow needed)."""
    return fileio.exists(fileio.join(ckpt_dir, "run.json")) and \
        fileio.exists(fileio.join(ckpt_dir, "export", "saved_model.pb"))


def _weights_files(ckpt_dir: str) -> tuple[list[str], str | None]:
    """The files holding the weights a run exported, and the checkpoint name they belong to: best/weights.*
    (chosen on validation data; name None), else only the latest checkpoint's files (no validation split;
    not every kept epoch)."""
    best = fileio.glob(fileio.join(ckpt_dir, "best", "weights*"))
    if any(f.endswith(".index") for f in best):
        return best, None
    ckpt = fileio.join(ckpt_dir, "ckpt")
    if not fileio.exists(fileio.join(ckpt, "checkpoint")):
        return [], None
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(ckpt)
    return (fileio.glob(latest + ".*"), fileio.basename(latest)) if latest else ([], None)


def trained_model(ckpt_dir: str, n_classes: int, cfg: FeatureConfig = DEFAULT_FEATURES):
    """The tf_keras model of a finished `birdclef train` run (or an ensemble member), with the weights its
    export holds."""
    import tensorflow as tf

    from birdclef import models
    from birdclef.features import mel_shape

    run = _run(ckpt_dir)
    if not run or "config" not in run:
        raise EnsembleError(f"{ckpt_dir}: no run.json of `birdclef train`; fix: pass the --ckpt-dir of a finished run")
    c = run["config"]
    model = models.build(c["model"], mel_shape(cfg), c["embedding_dim"], n_classes)
    best = fileio.join(ckpt_dir, "best", "weights")
    if fileio.exists(best + ".index"):
        model.load_weights(best)
    else:  # no validation split: the export holds the last epoch's weights
        latest = tf.train.latest_checkpoint(fileio.join(ckpt_dir, "ckpt"))
        if latest is None:
            raise EnsembleError(f"{ckpt_dir}: no trained weights (best/ or ckpt/); fix: finish `birdclef train` first")
        tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model


def _normalisation(ckpt_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """A member's TF Transform normalisation: its copy (ensembles) or its exported SavedModel's."""
    npz = fileio.join(ckpt_dir, "normalisation.npz")
    if fileio.exists(npz):
        with fileio.open_file(npz, "rb") as f:
            z = np.load(io.BytesIO(f.read()))
            return z["mean"], z["std"]
    import tensorflow as tf

    # read from the export's variables: loading the whole SavedModel for two vectors costs seconds
    reader = tf.train.load_checkpoint(fileio.join(ckpt_dir, "export", "variables", "variables"))
    return (reader.get_tensor("mean/.ATTRIBUTES/VARIABLE_VALUE"), reader.get_tensor("std/.ATTRIBUTES/VARIABLE_VALUE"))


def member_dirs(ckpt_dir: str) -> list[str]:
    """The training runs inside a model folder: itself, or an ensemble's copies."""
    run = _run(ckpt_dir) or {}
    if KIND in run:
        return [fileio.join(ckpt_dir, "members", m) for m in run[KIND]["members"]]
    return [ckpt_dir]


def members(ckpt_dir: str, n_classes: int, cfg: FeatureConfig = DEFAULT_FEATURES) -> list[tuple]:
    """(tf_keras model, mean, std) of each network of a training run (one) or an ensemble."""
    return [(trained_model(d, n_classes, cfg), *_normalisation(d)) for d in member_dirs(ckpt_dir)]


def _describe(ckpt_dir: str) -> dict:
    """What a candidate member is, or EnsembleError with the fix."""
    run = _run(ckpt_dir)
    export = fileio.join(ckpt_dir, "export")
    if not run or ("config" not in run and KIND not in run) or not is_finished(ckpt_dir):
        raise EnsembleError(f"{ckpt_dir}: not a finished `birdclef train` run or ensemble (run.json and export/); "
                            "fix: pass --ckpt-dir folders that train finished (a `birdclef classify` head or an "
                            "ONNX file cannot be a member)")
    info = fileio.read_json(fileio.join(export, "birdclef.json")) or {}
    if "classes" not in info or "features" not in info:
        raise EnsembleError(f"{export}: no birdclef.json with classes and features; fix: train it again with this "
                            "birdclef")
    return {"dir": ckpt_dir, "classes": info["classes"], "features": info["features"]}


def build(ckpt_dirs: list[str], out: str, overwrite: bool = False, cfg: FeatureConfig = DEFAULT_FEATURES,
          log=print) -> dict:
    """Write the ensemble of `ckpt_dirs` to `out`; returns its run.json. Members given twice count once;
    an ensemble among them adds its own members."""
    wanted = list(dict.fromkeys(fileio.absolute(d) for d in ckpt_dirs))
    if len(wanted) < len(ckpt_dirs):
        log(f"ensemble: {len(ckpt_dirs) - len(wanted)} folder(s) given twice, counted once")
    found = [_describe(d) for d in wanted]
    flat = [(m, info) for info in found for m in member_dirs(info["dir"])]
    if len(flat) < 2:
        raise EnsembleError(f"an ensemble needs two models or more, {len(flat)} given; fix: pass two --ckpt-dir "
                            "folders or more")
    first = found[0]
    for info in found[1:]:
        if info["classes"] != first["classes"]:
            diff = sorted(set(info["classes"]) ^ set(first["classes"]))
            raise EnsembleError(
                f"{info['dir']}: its classes differ from {first['dir']}'s"
                + (f" ({', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''} in one only)" if diff else " (order)")
                + "; fix: ensemble models trained on the same --data-path")
        if info["features"] != first["features"]:
            raise EnsembleError(f"{info['dir']}: its feature settings differ from {first['dir']}'s; fix: ensemble "
                                "models trained on the same transform output")
    record = {KIND: {"members": [f"m{i}" for i in range(len(flat))], "from": [m for m, _ in flat]},
              "classes": first["classes"]}
    done = _run(out) if fileio.exists(out) else None
    if done is not None and KIND in done and done[KIND].get("from") == record[KIND]["from"] \
            and fileio.exists(fileio.join(out, "export", "saved_model.pb")):
        log(f"ensemble: {out} already holds these {len(flat)} models; nothing to do")
        return done
    if fileio.exists(out) and fileio.glob(fileio.join(out, "*")) and not overwrite:
        raise EnsembleError(f"{out} exists and holds something else; fix: pass --overwrite to replace it, or "
                            "another --out (nothing was written)")
    from birdclef import export
    from birdclef.features import import_tensorflow

    import_tensorflow()
    # built beside `out`, then moved into place: an interrupted build leaves no half ensemble at `out`
    tmp = out.rstrip("/") + ".partial"
    fileio.remove_tree(tmp)
    nets = []
    for name, (src, info) in zip(record[KIND]["members"], flat):
        dst = fileio.join(tmp, "members", name)
        files, latest = _weights_files(src)
        if not files:
            raise EnsembleError(f"{src}: no trained weights (best/ or ckpt/); fix: finish `birdclef train` there")
        for f in files:
            rel = fileio.relpath(f, src)
            with fileio.open_file(f, "rb") as fh:
                fileio.write_bytes(fileio.join(dst, rel), fh.read())
        if latest:  # the copy's `checkpoint` names the one checkpoint copied
            fileio.write_text(fileio.join(dst, "ckpt", "checkpoint"),
                              f'model_checkpoint_path: "{latest}"\nall_model_checkpoint_paths: "{latest}"\n')
        fileio.write_json(fileio.join(dst, "run.json"), _run(src))
        mean, std = _normalisation(src)
        buf = io.BytesIO()
        np.savez(buf, mean=mean, std=std)
        fileio.write_bytes(fileio.join(dst, "normalisation.npz"), buf.getvalue())
        nets.append((trained_model(dst, len(first["classes"]), cfg), mean, std))
        log(f"ensemble: member {name} from {src}")
    export.save(nets, first["classes"], fileio.join(tmp, "export"), cfg)
    configs = [(_run(m) or {}).get("config", {}) for m, _ in flat]
    kinds = sorted({c.get("model", "?") for c in configs})
    losses = sorted({c.get("loss", "?") for c in configs})
    fileio.write_json(fileio.join(tmp, "metrics.json"), {
        "model": f"ensemble of {len(flat)} ({', '.join(kinds)})", "loss": ", ".join(losses),
        "params": int(sum(m.count_params() for m, _, _ in nets)), "classes": first["classes"],
        "members": record[KIND]["from"], "test": {}})
    fileio.write_json(fileio.join(tmp, "run.json"), record)  # last: a folder without it is not an ensemble
    fileio.remove_tree(out)
    fileio.rename(tmp, out)
    return record
