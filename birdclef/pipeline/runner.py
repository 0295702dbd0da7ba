"""Beam pipeline options from command-line flags.

Any Beam pipeline option passes through (`--runner`, `--project`, `--region`,
`--temp_location`, `--setup_file`, `--machine_type`, `--direct_num_workers`,
`--direct_running_mode`, `--flink_master`, `--spark_master_url`, ...).
Default: DirectRunner in multi-processing mode with one worker per CPU core; stage 1
(`stage1_args`) and stage 2 (`shuffle_bound_args`) choose in-memory where that measured faster.
"""
from __future__ import annotations

import os

def _has(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _runner(args: list[str]) -> str:
    return next((a.split("=", 1)[1] if "=" in a else args[args.index(a) + 1]
                 for a in args if a == "--runner" or a.startswith("--runner=")), "DirectRunner")


def shuffle_bound_args(beam_args: list[str] | None = None) -> list[str]:
    """Options for a pipeline whose cost is moving large records between transforms (stage 2).

    On DirectRunner, multi-processing sends every element through gRPC to and from
    the runner process; for stage 2 (100 KB mels joined into triples) that measured
    2.1-2.2x slower than in-memory on 2 cores, so in-memory is the default there
    unless --direct_running_mode is given. Other runners are left alone."""
    args = list(beam_args or [])
    if _runner(args).endswith("DirectRunner") and not _has(args, "--direct_running_mode"):
        args.append("--direct_running_mode=in_memory")
    return args


# Stage 1 on DirectRunner, measured on 2 cores, in one process (bench/transform.py corpus,
# 3.3 h of audio): in-memory with 2 worker threads 21-24 s wall / 34-38 CPU-s, multi-processing
# x2 34 s wall / 60 CPU-s; at 1 h, 8.7-10 s vs 20 s wall (in-memory with 1 thread: 11.8 s).
# Each worker process first imports Beam and TensorFlow (~8 CPU-s, ~10 s wall), while threads
# share the runner's imports and keep ~1.6 cores busy (decoding, resampling and TF ops release
# the GIL).
SMALL_INPUT_S = 3600.0
FEW_CORES = 2


def stage1_args(beam_args: list[str] | None, audio_seconds: float, cores: int | None = None) -> tuple[list[str], str]:
    """Options for stage 1 (decode + log-mel), and why, as a sentence for the log.

    On DirectRunner, unless --direct_running_mode is given: in-memory when the input is
    under SMALL_INPUT_S of audio or the machine has FEW_CORES or fewer (worker start-up
    outweighs the extra cores there, see above), else multi-processing with one worker
    per core. Other runners are left alone."""
    args = list(beam_args or [])
    cores = cores or os.cpu_count() or 1
    if not _runner(args).endswith("DirectRunner") or _has(args, "--direct_running_mode"):
        return args, "runner options as given"
    hours = audio_seconds / 3600
    if audio_seconds < SMALL_INPUT_S or cores <= FEW_CORES:
        why = (f"{hours:.2f} h of audio" if audio_seconds < SMALL_INPUT_S else f"{cores} CPU cores")
        if not _has(args, "--direct_num_workers"):
            args.append(f"--direct_num_workers={cores}")  # threads: decode, resample and TF release the GIL
        return args + ["--direct_running_mode=in_memory"], (
            f"in-memory, {cores} worker threads ({why}: worker processes' start-up would cost more than "
            f"it saves; --direct_running_mode=multi_processing overrides)")
    return args, f"multi-processing, {cores} workers ({hours:.1f} h of audio on {cores} cores)"


def pipeline_options(beam_args: list[str] | None = None):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args or [])
    if not _has(args, "--runner"):
        args.append("--runner=DirectRunner")
    runner = _runner(args)
    if runner.endswith("DirectRunner"):
        if not _has(args, "--direct_running_mode"):
            args.append("--direct_running_mode=multi_processing")
        if not _has(args, "--direct_num_workers"):
            in_memory = any(a.endswith("in_memory") for a in args)
            args.append(f"--direct_num_workers={1 if in_memory else (os.cpu_count() or 1)}")
    # Workers: one BLAS thread each, parallelism comes from Beam.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return PipelineOptions(args)


def check_remote_options(options) -> list[str]:
    """Problems with options a distributed runner needs, before anything is submitted."""
    from apache_beam.options.pipeline_options import (GoogleCloudOptions, SetupOptions, StandardOptions,
                                                      WorkerOptions)

    runner = options.view_as(StandardOptions).runner or ""
    problems = []
    if "DaskRunner" in runner:
        problems.append("DaskRunner is refused: with Beam 2.77 on a dask.distributed LocalCluster it finished "
                        "stage 1 without error but routed every tagged output into one sink's temp files and left "
                        "the final files empty (and it fails inside TF Transform analyzers). Use DirectRunner "
                        "(--direct_running_mode=multi_processing) on one machine, or Dataflow/Flink/Spark")
    if runner.endswith("DataflowRunner"):
        gc = options.view_as(GoogleCloudOptions)
        for name in ("project", "region", "temp_location"):
            if not getattr(gc, name):
                problems.append(f"DataflowRunner needs --{name}")
        setup = options.view_as(SetupOptions)
        image = getattr(options.view_as(WorkerOptions), "sdk_container_image", None)
        if not (setup.setup_file or setup.requirements_file or setup.extra_packages or image):
            problems.append("DataflowRunner workers need birdclef: pass --setup_file ./setup.py "
                            "(from a checkout) or --extra_package dist/birdclef-*.tar.gz")
    return problems
