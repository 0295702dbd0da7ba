"""Command line: `birdclef <command>`. Thin: parses flags, calls the stage.

Expected bad input prints one clear line per problem and no traceback; the exit
code is non-zero when nothing could be processed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EXIT_OK, EXIT_NOTHING_PROCESSED, EXIT_BAD_INPUT = 0, 1, 2


def _err(msg: str) -> None:
    print(f"birdclef: error: {msg}", file=sys.stderr)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file", disable=None, leave=False)
    return bar, (lambda: bar.update(1))


# ---------------------------------------------------------------- synth
def add_synth_args(p: argparse.ArgumentParser) -> None:
    from birdclef.data.synth import SynthConfig

    d = SynthConfig()
    p.add_argument("--species", type=ranged(int, 1), default=d.species, help="number of synthetic species (default %(default)s)")
    p.add_argument("--recordings-per-species", type=ranged(int, 1), default=d.recordings_per_species,
                   help="recordings per species (default %(default)s)")
    p.add_argument("--soundscapes", type=ranged(int, 0), default=d.soundscapes,
                   help="labelled 30 s soundscapes in train_soundscapes/ (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed, same data (default %(default)s)")


def synth_config(args):
    from birdclef.data.synth import SynthConfig

    return SynthConfig(species=args.species, recordings_per_species=args.recordings_per_species,
                       soundscapes=args.soundscapes, seed=args.seed)


def run_synth(out: str, cfg) -> dict:
    from birdclef import fileio, stages
    from birdclef.data import synth

    params = {"stage": "synth", **dataclasses.asdict(cfg)}
    if stages.is_done(out, params, "synth"):
        print(f"synth: {out} already holds this dataset (same parameters), kept as is")
        return json.loads(fileio.read_text(fileio.join(out, "synth.json")))
    if fileio.exists(fileio.join(out, "train_metadata.csv")):
        raise stages.StageConflict(f"{out} already holds a dataset that synth did not finish or did not make; "
                                   f"fix: choose an empty --out folder")
    bar, tick = _progress(synth.total_files(cfg), "synth")
    summary = synth.generate(out, cfg, progress=tick)
    bar.close()
    stages.mark_done(out, params, "synth", {k: v for k, v in summary.items() if k != "species"})
    return summary


def cmd_synth(args) -> int:
    s = run_synth(args.out, synth_config(args))
    print(f"synth: wrote {s['recordings']} recordings of {len(s['species'])} species, "
          f"{s['soundscapes']} labelled soundscapes ({s['soundscape_windows']} windows, "
          f"{s['nocall_windows']} nocall), {s['test_soundscapes']} test soundscapes, "
          f"{s['nonbird_clips']} non-bird clips into {args.out}")
    return EXIT_OK


# ---------------------------------------------------------------- validate
def run_validate(data_dir: str, decode: bool, min_duration: float, nonbird_dirs: tuple[str, ...] = ()):
    from birdclef.config import AudioConfig
    from birdclef.data import metadata
    from birdclef.validate import validate_dataset

    n = len(metadata.read_train_metadata(data_dir, strict=False, check_files=False).metadata)
    bar, tick = _progress(n, "validate")
    rep = validate_dataset(data_dir, AudioConfig(min_duration_s=min_duration), decode=decode, progress=tick,
                           nonbird_dirs=nonbird_dirs)
    bar.close()
    return rep


def cmd_validate(args) -> int:
    from birdclef import fileio

    rep = run_validate(args.data_dir, args.decode, args.min_duration, tuple(args.nonbird_dir or ()))
    for p in rep.problems:
        print(p)
    print(f"validate: {rep.summary()}")
    if args.report:
        fileio.write_text(args.report, json.dumps(rep.__dict__, indent=2))
        print(f"validate: report written to {args.report}")
    if rep.ok == 0:
        return EXIT_NOTHING_PROCESSED
    return EXIT_BAD_INPUT if (args.strict and rep.problems) else EXIT_OK


# ---------------------------------------------------------------- preprocess
def cmd_preprocess(args) -> int:
    from birdclef import preprocess

    if args.test_percent + args.val_percent >= 1:
        _err(f"--test-percent {args.test_percent:g} and --val-percent {args.val_percent:g} leave nothing to train "
             "on; fix: make their sum less than 1 (e.g. 0.1 and 0.1)")
        return EXIT_BAD_INPUT

    cfg = preprocess.PreprocessConfig(
        data_dir=args.data_dir, metadata_file=args.metadata_file, test_percent=args.test_percent,
        val_percent=args.val_percent, seed=args.seed, nonbird_dirs=tuple(args.nonbird_dir or ()),
        nonbird_holdout=args.nonbird_holdout,
        min_duration_s=args.min_duration)
    m = preprocess.run(args.work_dir, cfg)
    print(f"preprocess: {m['usable']['recordings']} recordings usable "
          f"({m['splits']['train']} train, {m['splits']['val']} val, {m['splits']['test']} test; "
          f"{m['labels']} labels + {m['nocall_recordings']} nocall), {m['usable']['soundscapes']} labelled "
          f"soundscapes, {m['quarantined']} quarantined; outputs in {preprocess.out_dir(args.work_dir)}")
    return EXIT_OK if m["usable"]["recordings"] else EXIT_NOTHING_PROCESSED


# ---------------------------------------------------------------- transform
def cmd_transform(args) -> int:
    from birdclef import stages
    from birdclef.pipeline.runner import check_remote_options, pipeline_options

    problems = check_remote_options(pipeline_options(args.beam_args))  # Beam's options: no TensorFlow yet
    problem = stages.missing_step(args.work_dir, "preprocess")
    for p in problems + ([problem] if problem else []):
        _err(p)
    if problems or problem:
        return EXIT_BAD_INPUT
    from birdclef.features import quiet_tensorflow_import

    quiet_tensorflow_import()
    from birdclef import transform

    m = transform.run(args.work_dir, args.beam_args)
    for q in m["quarantined_files"]:
        print(f"quarantined: {q['message']}")
    print(f"transform: {m['inputs']} inputs = {m['processed']} processed + {m['quarantined']} quarantined; "
          f"chunks per split {' / '.join(f'{n} {s}' for s, n in m['chunks_per_split'].items())}, "
          f"{m['triples']} triples, "
          f"{m['soundscape_windows']} soundscape windows; outputs in {args.work_dir}/transform")
    return EXIT_OK if m["processed"] else EXIT_NOTHING_PROCESSED


# ---------------------------------------------------------------- train
def cmd_train(args) -> int:
    from birdclef import stages
    from birdclef.config import ARCHITECTURES

    if args.model == "list":
        from birdclef import models

        print("\n".join(models.describe()))
        return EXIT_OK
    # every check that needs no TensorFlow first: a refusal comes in a second, not after the import
    if not args.data_path or not args.ckpt_dir:
        _err("train needs --data-path (a transform work dir) and --ckpt-dir")
        return EXIT_BAD_INPUT
    if args.model not in ARCHITECTURES:
        _err(f"--model {args.model!r} is not an architecture; choose {', '.join(ARCHITECTURES)} (--model list)")
        return EXIT_BAD_INPUT
    problem = stages.missing_step(args.data_path, "transform")
    if problem:
        _err(problem)
        return EXIT_BAD_INPUT
    if args.teacher:
        from birdclef import distill

        problem = distill.check_folder(args.teacher)
        if problem:
            _err(problem)
            return EXIT_BAD_INPUT
    from birdclef import train
    from birdclef.features import quiet_tensorflow_import

    quiet_tensorflow_import()
    cfg = train.TrainConfig(
        data_path=args.data_path, ckpt_dir=args.ckpt_dir, batch_size=args.batch_size, epochs=args.epochs,
        cache_dir=args.cache_dir, data_percent=args.data_percent, model=args.model, loss=args.loss,
        embedding_dim=args.embedding_dim, lr=args.lr, seed=args.seed, margin=args.margin,
        early_stopping=args.early_stopping, jit_compile=not args.no_jit, mixed_precision=args.mixed_precision,
        steps_per_epoch=args.steps_per_epoch, augment=args.augment, lr_schedule=args.lr_schedule,
        warmup_epochs=args.warmup_epochs, nocall_share=args.nocall_share, ema=args.ema, dropout=args.dropout,
        weight_decay=args.weight_decay, balance_alpha=args.balance_alpha, max_reads=args.max_reads,
        teacher=args.teacher or "", distill=args.distill, label_smoothing=args.label_smoothing,
        call_weight=args.call_weight)
    m = train.run(cfg)
    t = m["test"]
    if t.get("chunks"):
        print(f"train: test split k-NN top-1 {t['knn_top1']:.3f} (birds only {t['knn_top1_birds']:.3f}, balanced "
              f"{t['knn_balanced']:.3f}), classifier top-1 {t['classifier_top1']:.3f} (balanced "
              f"{t['classifier_balanced']:.3f}); chance {t['chance_uniform']:.3f} uniform, "
              f"{t['chance_majority']:.3f} majority; {t['chunks']} chunks, {t['bird_chunks']} with birds")
    print(f"train: checkpoints in {args.ckpt_dir}/ckpt, best in {args.ckpt_dir}/best, "
          f"metrics {args.ckpt_dir}/metrics.json, SavedModel {args.ckpt_dir}/export")
    return EXIT_OK


# ---------------------------------------------------------------- compare
def cmd_compare(args) -> int:
    import pandas as pd

    from birdclef import compare, fileio

    table, problems = compare.rows(args.ckpt_dirs)
    for p in problems:
        _err(p)
    if not table:
        return EXIT_NOTHING_PROCESSED
    print(compare.markdown(table))
    if args.csv:
        fileio.write_text(args.csv, pd.DataFrame(table).to_csv(index=False))
        print(f"compare: table written to {args.csv}")
    if args.plot:
        from birdclef import report

        report.plot_models(table, args.plot)
        print(f"compare: plot written to {args.plot}")
    return EXIT_OK


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from birdclef import predict, stages

    problem = stages.missing_step(args.work_dir, "preprocess")
    if problem:
        _err(problem)
        return EXIT_BAD_INPUT
    missing = [d for d in args.ckpt_dirs if predict.find_export(d) is None]
    for d in missing:
        _err(f"{d}: no exported model (saved_model.pb) here or in export/; fix: pass a --ckpt-dir that "
             "`birdclef train` finished")
    if len(missing) == len(args.ckpt_dirs):
        return EXIT_BAD_INPUT
    from birdclef import evaluate
    from birdclef.features import quiet_tensorflow_import

    quiet_tensorflow_import()
    done = []
    for d in [d for d in args.ckpt_dirs if d not in missing]:
        try:
            evaluate.run(args.work_dir, d, args.threshold, args.soundscapes)
            done.append(d)
        except evaluate.EvaluateError as e:
            _err(str(e))
    if not done:
        return EXIT_NOTHING_PROCESSED
    args.ckpt_dirs = done
    return cmd_compare(args)


# ---------------------------------------------------------------- predict
def _model_ready(ckpt_dir: str) -> bool:
    """Refuse (one line) a --ckpt-dir with no model, before any heavy import; else import TensorFlow
    quietly, unless the model is ONNX (served without it)."""
    from birdclef import predict

    if predict.find_export(ckpt_dir) is None:
        _err(f"{ckpt_dir}: no exported model (saved_model.pb) here or in export/, nor an ONNX file; fix: "
             "pass a --ckpt-dir that `birdclef train` finished, or its model.onnx (`birdclef export`)")
        return False
    if not str(ckpt_dir).lower().endswith(".onnx"):
        from birdclef.features import quiet_tensorflow_import

        quiet_tensorflow_import()
    return True


def workers_arg(value: str):
    """--workers: `auto` or a whole number >= 1."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number of processes >= 1, or auto")
    return n


def add_model_inputs(p: argparse.ArgumentParser) -> None:
    """Arguments of commands that run a model over recordings (predict, embed)."""
    p.add_argument("inputs", nargs="+", help="audio files or folders (local or gs://, s3://)")
    p.add_argument("--ckpt-dir", required=True,
                   help="a `birdclef train` --ckpt-dir, its export/ folder, or its model.onnx (`birdclef export`)")


def cmd_predict(args) -> int:
    from birdclef import predict

    if not _model_ready(args.ckpt_dir):
        return EXIT_BAD_INPUT
    try:
        summary = predict.run(args.ckpt_dir, args.inputs, args.out, args.threshold, presence=args.presence_threshold,
                              workers=args.workers)
    except predict.PredictError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    return EXIT_OK if summary["predicted"] else EXIT_NOTHING_PROCESSED


# ---------------------------------------------------------------- export
def cmd_export(args) -> int:
    from birdclef import fileio, predict

    if predict.find_export(args.ckpt_dir) is None or not fileio.exists(fileio.join(args.ckpt_dir, "run.json")):
        _err(f"{args.ckpt_dir}: not a finished `birdclef train` run or ensemble (no run.json and export/); fix: "
             "pass the --ckpt-dir that train (or ensemble) wrote")
        return EXIT_BAD_INPUT
    if args.format == "savedmodel":
        print(f"export: the SavedModel is {predict.find_export(args.ckpt_dir)} (train writes it)")
        return EXIT_OK
    out = args.out or fileio.join(args.ckpt_dir, f"model.{args.format}")
    if fileio.exists(out) and not args.overwrite:
        _err(f"{out} exists; fix: pass --overwrite to replace it, or --out elsewhere (nothing was written)")
        return EXIT_BAD_INPUT
    from birdclef.features import quiet_tensorflow_import

    quiet_tensorflow_import()
    from birdclef import onnx_model, tflite_model

    module, done = {
        "onnx": (onnx_model, lambda p: f"ONNX opset {onnx_model.OPSET}; input: the STFT power of 2 s chunks, made "
                                       f"by birdclef.onnx_model.chunk_power); use it with `birdclef predict FILES "
                                       f"--ckpt-dir {p} --out D`"),
        "tflite": (tflite_model, lambda p: f"LiteRT/TFLite, builtin ops; input: raw 32 kHz mono audio; classes in "
                                           f"{p}.json); run it with ai-edge-litert on a device (birdclef predict "
                                           "serves ONNX or the SavedModel)"),
    }[args.format]
    try:
        path = module.export(args.ckpt_dir, out)
    except (onnx_model.OnnxError, tflite_model.TfliteError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    print(f"export: {path} ({done(path)}")
    return EXIT_OK


# ---------------------------------------------------------------- ensemble
def cmd_ensemble(args) -> int:
    from birdclef import ensemble, fileio

    # refused before TensorFlow loads: folders without a finished run
    for d in args.ckpt_dirs:
        if not ensemble.is_finished(d):
            _err(f"{d}: not a finished `birdclef train` run or ensemble (run.json and export/); fix: pass "
                 "--ckpt-dir folders that train finished")
            return EXIT_BAD_INPUT
    from birdclef.features import quiet_tensorflow_import

    quiet_tensorflow_import()
    try:
        record = ensemble.build(args.ckpt_dirs, args.out, overwrite=args.overwrite)
    except ensemble.EnsembleError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    n = len(record[ensemble.KIND]["members"])
    print(f"ensemble: {args.out} serves the mean of {n} models (SavedModel {fileio.join(args.out, 'export')}); "
          f"next: `birdclef evaluate {args.out} --work-dir W`, `birdclef predict FILES --ckpt-dir {args.out} --out D`, "
          f"or `birdclef export --ckpt-dir {args.out}` for ONNX")
    return EXIT_OK


# ---------------------------------------------------------------- embed / search
def cmd_embed(args) -> int:
    from birdclef import embeddings, predict

    if not _model_ready(args.ckpt_dir):
        return EXIT_BAD_INPUT
    try:
        s = embeddings.embed(args.ckpt_dir, args.inputs, args.db)
    except (embeddings.EmbedError, predict.PredictError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    for q in s["quarantined"]:
        _err(q["message"])
    return EXIT_OK if s["embedded"] + s["resumed"] else EXIT_NOTHING_PROCESSED


def cmd_search(args) -> int:
    from birdclef import embeddings, predict

    try:
        res = embeddings.search(args.db, args.query, args.k, args.kind, args.out, index=args.index)
    except (embeddings.EmbedError, predict.PredictError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    print(res.head(10).to_string(index=False))
    return EXIT_OK


# ---------------------------------------------------------------- review
def cmd_review(args) -> int:
    from birdclef import review

    try:
        review.serve(args.db, args.results, args.host, args.port)
    except review.ReviewError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_classify(args) -> int:
    from birdclef import classify

    try:
        classify.train(args.db, args.out, replace=args.replace)
    except classify.ClassifyError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    return EXIT_OK


# ---------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from birdclef import demo

    return demo.run(args)


def add_table_args(p: argparse.ArgumentParser) -> None:
    """Arguments of commands that print the side-by-side table (compare, evaluate)."""
    p.add_argument("ckpt_dirs", nargs="+", help="checkpoint directories of `birdclef train` runs")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--plot", help="also draw the main metrics of the models side by side in this PNG")


def ranged(kind=float, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """An argparse type: a number of `kind` in [lo, hi] (open ends where said), else one line naming
    the allowed range (argparse adds the flag and exits 2). NaN is never in range."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"

    def parse(value: str):
        try:
            x = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not {'a whole number' if kind is int else 'a number'}; give one in {span}") from None
        bad = x != x or (lo is not None and (x < lo or (lo_open and x == lo))) or \
            (hi is not None and (x > hi or (hi_open and x == hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"{value} is out of range; give a value in {span}")
        return x

    return parse


def share(value: str) -> float:
    """A share of recordings given as a fraction (0.1) or a percent (10): one meaning, said aloud.

    [0, 1) is a fraction; [1, 100) a percent, converted and reported; anything else is refused."""
    x = ranged(float, 0, 100, hi_open=True)(value)
    if x >= 1:
        print(f"birdclef: note: {value} read as {x:g} % (a fraction of {x / 100:g})", file=sys.stderr)
        return x / 100
    return x


def _threshold(value: str):
    if value == "val":
        return value
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor val") from None
    return ranged(float, 0, 1, lo_open=True)(value) if x == x else ranged(float, 0, 1)(value)


def add_threshold_arg(p: argparse.ArgumentParser, allow_val: bool = False) -> None:
    text = "class score at which a bird is named in a window where a bird is present (default %(default)s)"
    if allow_val:
        text += ", or val: the threshold `birdclef evaluate` chose on the validation split (from CKPT_DIR/evaluation.json)"
    p.add_argument("--threshold", type=_threshold if allow_val else ranged(float, 0, 1, lo_open=True, hi_open=True),
                   default=0.5, help=text)


TRANSFORM_BEAM_OPTIONS = """\
Beam pipeline options (passed to Beam as given, Beam's own spelling; any other Beam option works too,
and one Beam does not know is refused):
  --runner R                 DirectRunner (default, runs here), DataflowRunner, FlinkRunner, SparkRunner,
                             PortableRunner, PrismRunner
  --direct_num_workers N     DirectRunner workers (default: one per core)
  --direct_running_mode M    in_memory | multi_threading | multi_processing (default: per stage, measured)
  --project P --region R     Dataflow: GCP project and region
  --temp_location gs://...   Dataflow: folder for temporary files
  --setup_file ./setup.py    Dataflow: so workers install birdclef (from a checkout)
  --requirements_file F      Dataflow: worker-requirements.txt (gcsfs for gs://)
  --flink_master HOST:PORT   Flink JobManager;  --spark_master_url spark://HOST:PORT   Spark master
"""


def build_parser() -> argparse.ArgumentParser:
    from birdclef import __version__

    parser = argparse.ArgumentParser(
        prog="birdclef",
        description="Learn to recognise birds from their calls (BirdCLEF-2021 layout data).")
    parser.add_argument("--version", action="version", version=f"birdclef {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's start-up messages (hidden by default); works after any command")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    p = sub.add_parser("demo", help="generate a synthetic dataset and run every stage on it end to end",
                       description="Generate a synthetic BirdCLEF-layout dataset in WORK_DIR/data and run "
                                   "every available stage on it, then list what was made.")
    p.add_argument("--work-dir", default="birdclef-demo", help="where everything goes (default %(default)s)")
    p.add_argument("--epochs", type=ranged(int, 1), default=15, help="training epochs of the demo model (default %(default)s)")
    add_synth_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("preprocess", help="split recordings by species and pick positives/negatives",
                       description="Species-stratified split grouped by recording, and positive/negative "
                                   "recordings for every anchor (train_metadata_pos_neg.csv). Header reads only.")
    p.add_argument("--work-dir", required=True, help="work directory (local or gs://, s3://)")
    p.add_argument("--data-dir", required=True, help="BirdCLEF-layout dataset root")
    p.add_argument("--metadata-file", default="train_metadata.csv",
                   help="metadata CSV, relative to --data-dir or a full path (default %(default)s)")
    p.add_argument("--test-percent", type=share, default=0.1, help="share of recordings per species for test: a fraction (0.1) or a percent (10) (default %(default)s)")
    p.add_argument("--val-percent", type=share, default=0.1, help="share of recordings per species for validation, as --test-percent (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--nonbird-dir", action="append", help="folder of non-bird audio (label nocall); repeatable")
    p.add_argument("--nonbird-holdout", type=ranged(float, 0, 1, hi_open=True), default=0.3,
                   help="share of non-bird clips per source held out, half val, half test (default %(default)s)")
    p.add_argument("--min-duration", type=ranged(float, 0), default=0.25, help="shortest usable recording, s (default %(default)s)")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("transform", help="Beam + TF Transform: chunks, log-mels, normalisation, TFRecords",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRANSFORM_BEAM_OPTIONS,
                       description=textwrap.fill(
                           "Stage 1 decodes every recording once into 2 s log-mel chunks (Beam); pairing builds "
                           "anchor/positive/negative chunk triples; stage 2 fits the normalisation on the train "
                           "split with TF Transform and writes TFRecords per split.", 100))
    p.add_argument("--work-dir", required=True, help="work directory holding preprocess/ (local or gs://)")
    p.set_defaults(func=cmd_transform, beam_args=[])

    from birdclef.config import ARCHITECTURES
    from birdclef.train import LOSSES, TrainConfig

    d = TrainConfig(data_path="", ckpt_dir="")
    p = sub.add_parser("train", help="train triplet / classification embedding models on the transform output",
                       description="Train an embedding model (and class head) on WORK_DIR/transform/tft. Running the "
                                   "same command again resumes after the last finished epoch.")
    p.add_argument("--data-path", help="required: work directory holding transform/ (local or gs://)")
    p.add_argument("--ckpt-dir", help="required: checkpoints, TensorBoard logs, metrics and the exported "
                                      "SavedModel (rerun to resume)")
    p.add_argument("--batch-size", type=ranged(int, 1), default=d.batch_size, help="default %(default)s")
    p.add_argument("--epochs", type=ranged(int, 1), default=d.epochs, help="default %(default)s")
    p.add_argument("--cache-dir", help="cache parsed input here (reused across runs while the data is the same)")
    p.add_argument("--data-percent", type=ranged(float, 0, 100, lo_open=True), default=d.data_percent,
                   help="percent of recordings per species to train on (default %(default)s)")
    p.add_argument("--model", default=d.model,
                   help=f"architecture: {', '.join(ARCHITECTURES)}, or list to describe them (default %(default)s)")
    p.add_argument("--loss", default=d.loss, choices=LOSSES, help="default %(default)s")
    p.add_argument("--embedding-dim", type=ranged(int, 1), default=d.embedding_dim, help="default %(default)s")
    p.add_argument("--lr", type=ranged(float, 0, lo_open=True), default=d.lr, help="Adam learning rate (default %(default)s)")
    p.add_argument("--margin", type=ranged(float, 0), default=d.margin, help="triplet margin (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    p.add_argument("--early-stopping", type=ranged(int, 0), default=0, help="stop after N epochs without validation gain")
    p.add_argument("--steps-per-epoch", type=ranged(int, 0), default=0, help="0: one pass over the training data")
    p.add_argument("--no-jit", action="store_true", help="turn off XLA jit_compile for the train step")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute (for GPUs)")
    p.add_argument("--augment", default=d.augment,
                   help=f"training augmentations, comma separated, or all / none (default {d.augment})")
    p.add_argument("--lr-schedule", default=d.lr_schedule, choices=("cosine", "constant"),
                   help="cosine: linear warm-up, then cosine decay to 5%% of --lr (default %(default)s)")
    p.add_argument("--warmup-epochs", type=ranged(float, 0), default=d.warmup_epochs, help="default %(default)s")
    p.add_argument("--dropout", type=ranged(float, 0, 1, hi_open=True), default=d.dropout,
                   help="dropout rate on the pooled features while training (default %(default)s)")
    p.add_argument("--weight-decay", type=ranged(float, 0, 1, hi_open=True), default=d.weight_decay,
                   help="decoupled weight decay of the kernels (AdamW); 0: plain Adam (default %(default)s)")
    p.add_argument("--ema", type=ranged(float, 0, 1, hi_open=True), default=d.ema,
                   help="decay of an exponential moving average of the weights, which is validated, kept as "
                        "best and exported; 0: off (default %(default)s; the decay warms up as (1+step)/(10+step) and "
                        "reaches 0.995 after about 1,800 steps)")
    p.add_argument("--teacher", metavar="MODEL_DIR",
                   help="distil a trained model (usually a `birdclef ensemble`) trained on the same --data-path: "
                        "the class head also learns its probabilities (see --distill)")
    p.add_argument("--distill", type=ranged(float, 0, 1, lo_open=True), default=d.distill,
                   help="with --teacher: share of the teacher's probabilities in the targets (default %(default)s)")
    p.add_argument("--label-smoothing", type=ranged(float, 0, 1, hi_open=True), default=d.label_smoothing,
                   help="pull the class head's 0/1 targets towards 1/2 by this much; 0: off (default %(default)s)")
    p.add_argument("--call-weight", type=ranged(float, 0, 1), default=d.call_weight,
                   help="loss weight of a bird-labelled chunk showing no call (its log-mel's contrast at or below "
                        "birdclef.weak_labels.LOW; full weight from HIGH up): a song's pauses carry the species "
                        "label too; 1: off (default %(default)s)")
    p.add_argument("--nocall-share", type=ranged(float, 0, 1, hi_open=True), default=d.nocall_share,
                   help="share of non-bird chunks in class-balanced batches (default %(default)s)")
    p.add_argument("--balance-alpha", type=ranged(float, 0, 1), default=d.balance_alpha,
                   help="class shares in training batches go as (chunks of the class) ** alpha: 0 every class "
                        "equally often, 1 as often as the data holds them (default %(default)s)")
    p.add_argument("--max-reads", type=ranged(float, 1), default=d.max_reads,
                   help="at most this many chunks are read per training example to balance classes; loss "
                        "weights make up the rest (default %(default)s)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="test-split metrics of trained models side by side",
                       description="Read metrics.json (and evaluation.json, where `birdclef evaluate` ran) of each "
                                   "CKPT_DIR given and print one table (markdown): birdclef compare C1 C2 ...")
    add_table_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", help="mAP, BirdCLEF row-wise F1 and detection P/R of trained models",
                       description="Run each model's exported SavedModel over the test-split recordings and "
                                   "the labelled soundscapes, write CKPT_DIR/evaluation.json, print the table.")
    add_table_args(p)
    p.add_argument("--work-dir", required=True, help="work directory the models were trained from (--data-path)")
    add_threshold_arg(p)
    p.add_argument("--soundscapes", default="test", choices=("test", "val", "train", "all"),
                   help="which split's labelled soundscapes to score (default %(default)s)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label the 5 s windows of recordings or soundscapes",
                       description="Audio files or folders in; submission.csv (BirdCLEF row_id,birds), "
                                   "scores.csv (one column per class) and Raven selection tables out.")
    add_model_inputs(p)
    p.add_argument("--out", required=True, help="output folder; an interrupted run resumes here")
    add_threshold_arg(p, allow_val=True)
    p.add_argument("--presence-threshold", type=ranged(float, 0, 1, lo_open=True, hi_open=True), default=None,
                   help="bird presence (the `bird` score) a window needs before any bird is named in it; "
                        "below it the window is nocall (default 0.5; with --threshold val, the gate evaluate chose)")
    p.add_argument("--workers", type=workers_arg, default="auto",
                   help="processes the files are spread over, each with the model loaded once (default auto: one "
                        "per core for an ONNX model and at least 4 files per worker, else 1)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a trained model as ONNX (served by ONNX Runtime, without TensorFlow)",
                       description="Write CKPT_DIR/model.onnx from a finished `birdclef train` run. predict and "
                                   "evaluate take it as --ckpt-dir CKPT_DIR/model.onnx. --format tflite writes "
                                   "CKPT_DIR/model.tflite (LiteRT, raw audio in) and its class list beside it, for "
                                   "devices.")
    p.add_argument("--ckpt-dir", required=True, help="a finished `birdclef train` --ckpt-dir")
    p.add_argument("--format", default="onnx", choices=("onnx", "savedmodel", "tflite"), help="default %(default)s")
    p.add_argument("--out", help="where the file goes (default CKPT_DIR/model.onnx or model.tflite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ensemble", help="serve several trained models as one (mean of their scores)",
                       description="Average the class scores and bird presence of trained models (other seeds, "
                                   "recipes or architectures with the same classes) into one model folder that "
                                   "evaluate, predict, embed, compare and export take like a training run's. "
                                   "The members' weights are copied in; inference costs their sum.")
    p.add_argument("ckpt_dirs", nargs="+", metavar="CKPT_DIR", help="finished `birdclef train` --ckpt-dir folders (two or more)")
    p.add_argument("--out", required=True, help="the ensemble's folder (made; the members are not changed)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("embed", help="store the embeddings of every 5 s window (and 2 s chunk) in a database",
                       description="Embed recordings with a trained model into an SQLite database (resumable; "
                                   "one model per database), for `birdclef search`.")
    add_model_inputs(p)
    p.add_argument("--db", required=True, help="SQLite file (made if missing; an interrupted run resumes)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("search", help="find the stored windows most like an example call",
                       description="Rank the windows of an embedding database by cosine similarity to a query "
                                   "(exact search); write search.csv and a Raven selection table.")
    p.add_argument("--db", required=True, help="a database made by `birdclef embed`")
    p.add_argument("--query", required=True, help="AUDIO or AUDIO@START-END (seconds), e.g. call.wav@3.5-5")
    p.add_argument("-k", type=ranged(int, 1), default=50, help="how many results (default %(default)s)")
    p.add_argument("--kind", default="window", choices=("window", "chunk"), help="default %(default)s")
    p.add_argument("--out", help="folder for search.csv and search.selections.txt")
    p.add_argument("--index", default="auto", choices=("auto", "exact", "approx"),
                   help="exact: compare with every stored vector; approx: an HNSW index beside the database (built "
                        "on first use, kept up to date); auto: exact up to 200,000 vectors (default %(default)s)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("review", help="page through windows in the browser, listen, and label them",
                       description="A local web page (http://127.0.0.1:PORT/) that shows each window's spectrogram, "
                                   "plays it and records a label per window (a species code, not, or unsure) in the "
                                   "database, with the time given. Works offline.")
    p.add_argument("--db", required=True, help="a database made by `birdclef embed` (labels are stored in it)")
    p.add_argument("--results", help="review the rows of this CSV (search.csv, detections.csv or scores.csv) "
                                     "instead of every window of the database")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default %(default)s: this computer only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=ranged(int, 1, 65535), default=8000, help="default %(default)s")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("classify", help="train a classifier on the windows labelled in review",
                       description="Fit a linear classifier (one-vs-rest logistic regression) on the labelled window "
                                   "embeddings of DB, check it on held-out windows (cross-validation) and write a "
                                   "model directory that `birdclef predict --ckpt-dir OUT` and evaluate accept.")
    p.add_argument("--db", required=True, help="a database made by `birdclef embed`, labelled in `birdclef review`")
    p.add_argument("--out", required=True, help="the classifier's model directory")
    p.add_argument("--replace", action="store_true", help="overwrite a classifier already in --out")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("synth", help="write a synthetic BirdCLEF-layout dataset (no download needed)",
                       description="Write a deterministic synthetic dataset in the BirdCLEF-2021 layout.")
    p.add_argument("--out", required=True, help="output folder (local path or gs://, s3://)")
    add_synth_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("validate", help="check a dataset's CSVs and audio files, one line per problem",
                       description="Check train_metadata.csv, train_soundscape_labels.csv and every audio file "
                                   "they name. Exit 1 when no file is usable; with --strict, 2 on any problem.")
    p.add_argument("--data-dir", required=True, help="BirdCLEF-layout root (local path or gs://, s3://)")
    p.add_argument("--decode", action="store_true", help="fully decode every file (slower; finds truncation and silence)")
    p.add_argument("--min-duration", type=ranged(float, 0), default=0.25, help="shortest usable recording, s (default %(default)s)")
    p.add_argument("--nonbird-dir", action="append", help="also check a folder of non-bird audio; repeatable")
    p.add_argument("--report", help="also write the problems as JSON to this path")
    p.add_argument("--strict", action="store_true", help="exit 2 when any problem is found")
    p.set_defaults(func=cmd_validate)
    return parser


_FULL = ("No space left on device", "Disk quota exceeded")


def disk_full(e: BaseException) -> str | None:
    """For an error caused by a full disk (or quota), the path it names ('' when none); else None.

    Looks through the chain of causes, as Beam and TensorFlow wrap the OSError of the write."""
    import errno
    import re

    seen: BaseException | None = e
    for _ in range(20):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(seen.filename or "")
        text = re.sub(r"\[while running '[^']*'\]", "", str(seen))  # Beam's step names are not paths
        if any(f in text for f in _FULL):
            # TensorFlow: "... {{function_node ...device:CPU:0}} ck/ckpt/ckpt-1_temp/part-0.data-0.tempstate92; No
            # space left on device": the path is the word before the phrase (relative, as the user gave it)
            # an OSError's own text, wrapped by Beam: "... No space left on device: 'w/transform/x'"
            m = re.search(r"""(?:No space left on device|Disk quota exceeded): '([^']+)'""", text) or \
                re.search(r"""([^\s'"{}]*/[^\s'"{}]*?)[;:,]?\s+(?:No space left|Disk quota)""", text) or \
                re.search(r"""(?:[a-z0-9]+://|/)[^\s'":,;{}]+""", text)
            return re.sub(r"\.tempstate\d+$", "", m.group(1) if m.lastindex else m.group(0)) if m else ""
        seen = seen.__cause__ or seen.__context__
    return None


def one_style(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Flags are shown with hyphens (--data-path); the underscore spellings of the original scripts
    (--data_path, --ckpt_dir, --batch_size, ...) keep working: a token that names no flag of ours but
    does once its underscores are hyphens is read as that flag. Other tokens (Beam's own
    --direct_num_workers, --temp_location, ...) pass unchanged."""
    known = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= set(sub._option_string_actions)
    out = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            alt = "--" + name[2:].replace("_", "-")
            if name not in known and alt in known:
                token = alt + eq + value
        out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    from birdclef.audio import AudioError
    from birdclef.data.metadata import MetadataError
    from birdclef.stages import StageConflict
    from birdclef.train import TrainError
    from birdclef.transform import TransformError

    import logging

    for name in ("apache_beam", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in argv:  # anywhere on the line: TensorFlow's and Beam's own start-up lines are kept
        argv.remove("--verbose")
        os.environ["BIRDCLEF_VERBOSE"] = "1"
    else:  # a failing step's traceback, which Beam logs before raising the error answered here in one line
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    parser = build_parser()
    args, extra = parser.parse_known_args(one_style(parser, argv))
    if extra:
        if getattr(args, "func", None) is not cmd_transform:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.beam_args = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except MetadataError as e:
        for p in e.problems:
            _err(f"{e.path}: {p}")
        return EXIT_BAD_INPUT
    except (AudioError, StageConflict, TransformError, TrainError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted; run the same command again to resume")
        return 130
    except Exception as e:  # noqa: BLE001 - only a full disk is answered here, anything else propagates
        where = disk_full(e)
        if where is None:
            raise
        if not where:  # the error names no file: the folder this command writes to
            where = next((str(getattr(args, a)) for a in ("out", "db", "ckpt_dir", "work_dir")
                          if isinstance(getattr(args, a, None), str)), "")
        _err(f"no space left on the device{' writing ' + where if where else ''}; fix: free space there (or "
             "point --out / --work-dir / --ckpt-dir / --db at another disk) and run the same command again: "
             "finished parts are kept and the run resumes")
        return EXIT_NOTHING_PROCESSED


if __name__ == "__main__":
    sys.exit(main())
