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
    the runner process; for stage 2 (50 KB mels through TF Transform and into triples) that
    measured 2.1-2.5x slower than in-memory on 2 cores, so in-memory is the default there
    unless --direct_running_mode is given. Other runners are left alone."""
    args = list(beam_args or [])
    if _runner(args).endswith("DirectRunner") and not _has(args, "--direct_running_mode"):
        args.append("--direct_running_mode=in_memory")
    return args


# Stage 2 on DirectRunner: Beam's FnApiRunner holds each PCollection that crosses a stage boundary
# in memory. No mel crosses one any more (the triple join moves chunk locations, and the chunks are
# read without a flatten), so only small records grow with the input. Peak RSS measured (in-memory):
# 1.19 GB for 2033 chunks and 1.18 GB for 4031 (joining on the mels and reading through a flatten:
# 2.5 and 4.4 GB). The per-chunk figure is an estimate of the join's small records (location,
# triple references, as Python objects), not a measurement at scale.
STAGE2_BASE_MB, STAGE2_MB_PER_CHUNK = 1300.0, 0.005


def is_direct(args: list[str] | None) -> bool:
    return _runner(list(args or [])).split(".")[-1] in LOCAL_RUNNER_NAMES


def available_memory_mb() -> float | None:
    """Memory available to a new process (MemAvailable on Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (ValueError, OSError, AttributeError):
        return None


def stage2_memory_warning(n_chunks: int, available_mb: float | None) -> str | None:
    """A warning when stage 2 on DirectRunner would likely need more memory than is available."""
    need = STAGE2_BASE_MB + STAGE2_MB_PER_CHUNK * n_chunks
    if available_mb is None or need <= available_mb:
        return None
    return (f"WARNING: stage 2 on DirectRunner keeps its triple join in memory: {n_chunks} chunks need about "
            f"{need / 1024:.1f} GB, and {available_mb / 1024:.1f} GB is available, so the system may kill it. "
            f"Fix: run it on a distributed runner (--runner FlinkRunner/SparkRunner/DataflowRunner, even on one "
            f"machine), or on a machine with more memory; stage 1's output is kept and reused")


# Stage 1 on DirectRunner, measured on 2 cores: each worker process first imports Beam and
# TensorFlow (~6-8 CPU-s, ~10-15 s wall), while in-memory worker threads share the runner's imports
# and keep ~1.6 cores busy (decoding, resampling and TF ops release the GIL). 1 h of audio: 7.8-9.2 s
# in-memory with 2 threads vs 20 s with 2 processes. 3.3 h, cold: 28-32 s vs 28-34 s (one machine),
# 30-35 s vs 31-39 s over 4-5 runs on a slower one (in-memory used up to 25 % less CPU); 5.3 h: 38 s vs 46 s.
# Processes pay off past roughly F / (c_threads - c_process / cores) of audio (F ~15 s of start-up,
# c_threads ~2.0-2.6 ms wall and c_process ~3.2 ms CPU per audio-s): ~4-10 h on 2 cores, ~1.7 h on 4.
# On a faster 2-core machine (bench/transform.py) the steady rates per core were equal (619 vs 618
# audio-s per core-s at 7.3 h) and threads started faster (4.0 vs 5.2 s): 7.3 h took 25.2 s in-memory
# against 26.4 s with processes, with 16 % less CPU; 3.3 h 14.3 s both. So on 2 cores threads stay
# ahead well past that; 24 h caps the extrapolation.
SMALL_INPUT_S = 3600.0
SMALL_INPUT_FEW_CORES_S = 24 * 3600.0
FEW_CORES = 2


def stage1_args(beam_args: list[str] | None, audio_seconds: float, cores: int | None = None) -> tuple[list[str], str]:
    """Options for stage 1 (decode + log-mel), and why, as a sentence for the log.

    On DirectRunner, unless --direct_running_mode is given: in-memory with one worker
    thread per core under SMALL_INPUT_S of audio (SMALL_INPUT_FEW_CORES_S on FEW_CORES
    or fewer), where worker processes' start-up outweighs what they add (see above);
    else multi-processing with one worker per core. Other runners are left alone."""
    args = list(beam_args or [])
    cores = cores or os.cpu_count() or 1
    if not _runner(args).endswith("DirectRunner") or _has(args, "--direct_running_mode"):
        return args, "runner options as given"
    hours = audio_seconds / 3600
    small = SMALL_INPUT_FEW_CORES_S if cores <= FEW_CORES else SMALL_INPUT_S
    if audio_seconds < small:
        if not _has(args, "--direct_num_workers"):
            args.append(f"--direct_num_workers={cores}")
        return args + ["--direct_running_mode=in_memory"], (
            f"in-memory, {cores} worker threads ({hours:.2f} h of audio on {cores} cores: worker processes' "
            f"start-up would cost more than they add; --direct_running_mode=multi_processing overrides)")
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


LOCAL_RUNNER_NAMES = ("DirectRunner", "SwitchingDirectRunner")


def make_pipeline(beam_args: list[str] | None = None):
    """A Beam pipeline with `pipeline_options(beam_args)`, on the runner birdclef measured.

    Beam 2.77's DirectRunner first tries PrismRunner, which downloads a runner binary from
    GitHub at start: offline (as in CI) that fails and Beam falls back to its FnApiRunner,
    but on a machine with network the same command would run on another engine, untested
    here and ignoring --direct_running_mode. So DirectRunner means the FnApiRunner, set up
    as DirectRunner's fallback sets it up (pipeline options passed on to its workers),
    whether or not the network is there. `--runner PrismRunner` still picks Prism."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import StandardOptions

    options = pipeline_options(beam_args)
    if (options.view_as(StandardOptions).runner or "").split(".")[-1] not in LOCAL_RUNNER_NAMES:
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)


# runners a pipeline can be given (Direct and Prism run here; the others build here and run on their cluster)
SUPPORTED_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner",
                     "PrismRunner")


def check_remote_options(options) -> list[str]:
    """Problems with options a distributed runner needs, before anything is submitted."""
    from apache_beam.options.pipeline_options import (GoogleCloudOptions, SetupOptions, StandardOptions,
                                                      WorkerOptions)

    import logging

    from apache_beam.options.pipeline_options import DirectOptions

    runner = options.view_as(StandardOptions).runner or ""
    problems = []
    name = runner.split(".")[-1]
    if runner and name not in SUPPORTED_RUNNERS and "DaskRunner" not in runner:
        problems.append(f"--runner {runner}: not a Beam runner birdclef knows; choose one of "
                        f"{', '.join(SUPPORTED_RUNNERS)}")
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and int(workers) < 1:
        problems.append(f"--direct_num_workers {workers}: give at least 1 (0 and below are not worker counts)")
    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_log.level
    beam_log.setLevel(logging.ERROR)  # its "Discarding unparseable args" warning is said below, once
    try:
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))
    finally:
        beam_log.setLevel(level)
    if unknown:
        problems.append(f"unknown option(s) {', '.join('--' + u for u in unknown)}: neither a birdclef transform flag "
                        f"nor a Beam pipeline option; fix: check the spelling (`birdclef transform --help`)")
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
        if not (setup.setup_file or setup.extra_packages or image):
            problems.append("DataflowRunner workers need birdclef: pass --setup_file ./setup.py "
                            "(from a checkout) or --extra_package dist/birdclef-*.tar.gz")
        if not (setup.requirements_file or image):
            # birdclef's package installs no fsspec backend; Dataflow data lives on gs://
            problems.append("DataflowRunner workers read gs:// through gcsfs, which birdclef's package does not "
                            "install: pass --requirements_file worker-requirements.txt (from a checkout), or "
                            "--sdk_container_image with birdclef[gcs] installed")
    return problems
