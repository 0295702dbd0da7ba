"""Files spread over worker processes, each holding the model once (`birdclef predict --workers N`).

One long file keeps both cores busy on its own: the model runs many chunks per call and ONNX Runtime
uses every core for it. Many short files do not: each gives the model a few chunks, and decoding,
resampling and the per-file Python work run on one core between calls. With N workers, each file
goes whole to one worker process, which loads the model once (ONNX Runtime or TensorFlow limited to
one thread, so N workers use N cores), scores the file, writes its part file (the same resumable
`parts/` as a one-process run) and returns; the parent only collects.

Workers are started with `spawn` (a fresh interpreter: a forked copy of a process whose ONNX Runtime
or TensorFlow thread pools already run can hang). Each costs its start-up (about 1 s for an ONNX
model, several seconds and a few hundred MB for a SavedModel), so `auto` uses workers only for ONNX
models and only when there are at least WORKER_MIN_FILES files per worker to do.
"""
from __future__ import annotations

import os

WORKER_MIN_FILES = 4  # `auto`: at least this many files per worker, or fewer workers

_state: dict = {}


def auto_workers(model_path: str, pending: int, cpus: int | None = None) -> int:
    """`--workers auto`: one per core for an ONNX model with enough files to share, else 1."""
    cpus = cpus or os.cpu_count() or 1
    if not str(model_path).lower().endswith(".onnx"):
        return 1
    return max(1, min(cpus, pending // WORKER_MIN_FILES))


def _init(model_path: str, acfg, cfg) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from birdclef import predict

    serve, classes, _ = predict.load_model(model_path, threads=1)
    _state.update(serve=serve, classes=classes, acfg=acfg, cfg=cfg)


def _score(job: tuple[str, str]) -> tuple[str, dict | None]:
    """(path, None) once the file's part is written, or (path, its quarantine row)."""
    from birdclef import predict

    path, part = job
    if path == os.environ.get("BIRDCLEF_TEST_WORKER_EXIT_ON"):  # tests: a worker killed mid-run
        os._exit(1)
    _, bad = predict.score_file(_state["serve"], _state["classes"], path, part, _state["acfg"], _state["cfg"])
    return path, bad


def score_files(model_path: str, jobs: list[tuple[str, str]], workers: int, acfg, cfg):
    """Yield (path, quarantine row or None) for each (path, part file) job, in the jobs' order, each file
    scored by one of `workers` processes that write the part files."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init,
                                 initargs=(model_path, acfg, cfg)) as pool:
            yield from pool.map(_score, jobs, chunksize=1)
    except BrokenProcessPool as e:
        raise WorkerDied(f"a worker process stopped without finishing ({e}; killed for lack of memory?); the files "
                         f"it finished are kept; fix: run the same command again, or with --workers 1") from e


class WorkerDied(Exception):
    pass
