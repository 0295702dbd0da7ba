"""The whole transform on ../shared/data: birdclef-mini + nonbird + corrupt (as a non-bird folder)."""
import collections
import json
import os

import numpy as np
import pytest

from birdclef import audio, preprocess, stages, transform
from birdclef.pipeline import records

CORRUPT_REASONS = {"empty.ogg": "empty", "truncated.ogg": "truncated", "not_audio.ogg": "not_audio",
                   "too_short_0.2s.wav": "too_short", "silent_10s.wav": "silent"}
IN_MEMORY = ["--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("transform"))
    cfg = preprocess.PreprocessConfig(
        data_dir=str(shared_data / "birdclef-mini"),
        nonbird_dirs=(str(shared_data / "nonbird"), str(shared_data / "corrupt")))
    preprocess.run(work, cfg, log=lambda s: None)
    decodes = collections.Counter()
    real_stream = audio.stream

    def counting_stream(path, *a, **kw):
        decodes[str(path)] += 1
        return real_stream(path, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        # in-memory DirectRunner: workers run in this process and see the patch
        mp.setattr(audio, "stream", counting_stream)
        manifest = transform.run(work, IN_MEMORY, log=lambda s: None)
    return work, manifest, decodes


def test_inputs_are_processed_plus_quarantined(run, shared_data):
    _, m, _ = run
    n_inputs = 98 + 145 + 8 + 2  # recordings, non-bird clips, corrupt files, labelled soundscapes
    assert m["inputs"] == n_inputs == m["processed"] + m["quarantined"]
    got = {os.path.basename(q["path"]): q["reason"] for q in m["quarantined_files"]}
    assert got == CORRUPT_REASONS
    assert all(str(shared_data / "corrupt") in q["path"] for q in m["quarantined_files"])
    assert all("fix:" in q["message"] for q in m["quarantined_files"])


def test_each_recording_decoded_exactly_once(run):
    _, m, decodes = run
    # every file that reached stage 1 (processed + quarantined there) was decoded once, and only once
    stage1 = set(m["processed_files"]) | {q["path"] for q in m["quarantined_files"] if q["stage"] == "transform:stage1"}
    assert set(decodes) == stage1
    assert set(decodes.values()) == {1}


def _mels(ds):
    return np.concatenate([b["mel"].numpy() for b in ds])


def test_normalisation_fitted_on_train_split_only(run):
    import tensorflow as tf
    import tensorflow_transform as tft

    work, _, _ = run
    spec = records.chunk_feature_spec()
    raw = {s: _mels(records._dataset(f"{work}/transform/chunks/{s}-*.tfrecord", spec, 256, 0, None))
           for s in ("train", "val", "test")}
    frames = raw["train"].reshape(-1, 128).astype(np.float64)
    mean, var = frames.mean(0), frames.var(0)
    all_frames = np.concatenate([r.reshape(-1, 128) for r in raw.values()]).astype(np.float64)
    assert np.abs(all_frames.mean(0) - mean).max() > 0.05  # the splits really differ

    tf_out = tft.TFTransformOutput(f"{work}/transform/tft")
    probe = {k: tf.constant([""]) for k in ("recording_id", "label", "labels", "split", "row_id")}
    probe["chunk_index"] = tf.constant([0], tf.int64)
    probe["mel"] = tf.constant([np.zeros((200, 128), records.MEL_DTYPE).tobytes()])
    zero = tf_out.transform_raw_features(probe)["mel"].numpy()[0, 0]
    probe["mel"] = tf.constant([np.ones((200, 128), records.MEL_DTYPE).tobytes()])
    one = tf_out.transform_raw_features(probe)["mel"].numpy()[0, 0]
    scale = 1.0 / (one - zero)           # = sqrt(var + eps)
    offset = -zero * scale               # = mean
    np.testing.assert_allclose(offset, mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scale ** 2, var + 1e-6, rtol=1e-3)
    # and the written train chunks are standardised, the others only close to it
    norm_train = _mels(records.chunks_dataset(work, "train", batch_size=256)).reshape(-1, 128)
    assert np.abs(norm_train.mean(0)).max() < 1e-3 and np.abs(norm_train.std(0) - 1).max() < 1e-3


def test_triples_and_windows(run):
    work, m, _ = run
    pairs = [json.loads(line) for line in open(f"{work}/transform/pairs/triples.jsonl")]
    assert m["triples"] == len(pairs) > 0
    n = 0
    for batch in records.triples_dataset(work, "train", batch_size=128):
        a, p, ng = batch["anchor_mel"].numpy(), batch["positive_mel"].numpy(), batch["negative_mel"].numpy()
        assert a.shape[1:] == p.shape[1:] == ng.shape[1:] == (200, 128) and np.isfinite(a).all()
        assert not np.array_equal(a, ng)
        assert (batch["anchor_label"].numpy() != batch["negative_label"].numpy()).all()
        n += len(a)
    assert n == m["triples_per_split"]["train"]
    # each triple holds exactly the normalised chunks its pairing names
    mel = {}
    for split in ("train", "val", "test"):
        for b in records.chunks_dataset(work, split, batch_size=256):
            for rid, idx, x in zip(b["recording_id"].numpy(), b["chunk_index"].numpy(), b["mel"].numpy()):
                mel[(rid.decode(), int(idx))] = x
    by_anchor = {tuple(t["anchor"]): t for t in pairs}
    assert len(by_anchor) == len(pairs)
    checked = 0
    for split in ("train", "val"):
        for b in records.triples_dataset(work, split, batch_size=256):
            for k, (rid, idx) in enumerate(zip(b["anchor_id"].numpy(), b["anchor_chunk"].numpy())):
                t = by_anchor[(rid.decode(), int(idx))]
                for role in ("anchor", "positive", "negative"):
                    np.testing.assert_array_equal(b[f"{role}_mel"].numpy()[k], mel[tuple(t[role])])
                checked += 1
    assert checked >= m["triples_per_split"]["train"] + m["triples_per_split"].get("val", 0)
    rows = collections.Counter()
    for split in ("train", "val", "test"):
        try:
            for b in records.chunks_dataset(work, split, kind="windows", batch_size=64):
                rows.update(r.decode() for r in b["row_id"].numpy())
        except FileNotFoundError:
            pass
    assert len(rows) == 5 and set(rows.values()) == {4}  # 5 labelled windows, 4 chunks each


def test_rerun_skips_resumes_and_refuses(run, capsys):
    work, m, _ = run
    chunk_file = sorted(f for f in os.listdir(f"{work}/transform/chunks") if f.endswith(".tfrecord"))[0]
    before = os.stat(f"{work}/transform/chunks/{chunk_file}").st_mtime_ns
    logs = []
    transform.run(work, IN_MEMORY, log=logs.append)
    assert any("stage 1 already complete" in l for l in logs) and any("stage 2 already complete" in l for l in logs)
    # an interrupted stage 2 (no marker) is redone, stage 1 is kept
    os.remove(stages.marker(f"{work}/transform/tft"))
    transform.run(work, IN_MEMORY, log=lambda s: None)
    assert os.stat(f"{work}/transform/chunks/{chunk_file}").st_mtime_ns == before
    assert os.path.exists(stages.marker(f"{work}/transform/tft"))
    # other feature parameters on the same work dir: refused, nothing touched
    from birdclef.config import FeatureConfig

    with pytest.raises(stages.StageConflict, match="n_mels"):
        transform.run(work, IN_MEMORY, feature_cfg=FeatureConfig(n_mels=64), log=lambda s: None)
    assert os.stat(f"{work}/transform/chunks/{chunk_file}").st_mtime_ns == before


def _cluster_page_commands() -> list[list[str]]:
    """The Beam flags of each `birdclef transform` command of docs/cluster.md, as the CLI hands them on."""
    import shlex

    from birdclef import cli
    from conftest import REPO, bash_blocks

    out = []
    for block in bash_blocks((REPO / "docs" / "cluster.md").read_text()):
        for line in block.splitlines():
            if line.startswith("birdclef transform "):
                parser = cli.build_parser()
                args, extra = parser.parse_known_args(cli.one_style(parser, shlex.split(line)[1:]))
                assert args.func is cli.cmd_transform
                out.append(extra)
    return out


CLUSTER_COMMANDS = _cluster_page_commands()


def test_the_cluster_page_shows_every_engine():
    assert sorted(a[1] for a in CLUSTER_COMMANDS) == ["DataflowRunner", "FlinkRunner", "SparkRunner"]


@pytest.mark.parametrize("runner_args", CLUSTER_COMMANDS, ids=lambda a: a[1])
def test_distributed_runners_build_without_submitting(run, runner_args, tmp_path, monkeypatch):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, StandardOptions

    # Building a Dataflow pipeline asks GCS about the temp bucket; this machine has no network.
    monkeypatch.setattr(GoogleCloudOptions, "_warn_if_soft_delete_policy_enabled", lambda *a, **k: None)
    from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
    from birdclef.pipeline import runner, stage1_chunks, stage2_tft

    work, _, _ = run
    if runner_args[1] == "DataflowRunner":
        runner_args = [*runner_args, "--no_auth"]  # no credentials on this machine
    opts = runner.pipeline_options(runner_args)
    assert runner.check_remote_options(opts) == []
    assert runner.shuffle_bound_args(runner_args) == runner_args  # stage 2 keeps the user's runner as given
    assert opts.view_as(StandardOptions).runner == runner_args[1]
    if runner_args[1] == "DataflowRunner":
        gc = opts.view_as(GoogleCloudOptions)
        assert (gc.project, gc.region, gc.temp_location) == ("my-project", "europe-west1", "gs://my-bucket/tmp")
        assert opts.view_as(SetupOptions).setup_file == "./setup.py"
    data_dir = json.load(open(f"{work}/preprocess/_SUCCESS.json"))["params"]["data_dir"]
    items = stage1_chunks.work_items(f"{work}/preprocess", data_dir)
    p = beam.Pipeline(options=opts)  # never run: building must not contact any service
    # outputs local: a gs:// path would make Beam look up credentials, and this machine has no network
    stage1_chunks.build(p, items[:3], str(tmp_path / "chunks"), DEFAULT_AUDIO, DEFAULT_FEATURES)
    stage2_tft.build(p, f"{work}/transform/chunks", f"{work}/transform/pairs/triples.jsonl", str(tmp_path / "tft"),
                     DEFAULT_FEATURES, str(tmp_path / "tmp"))
    labels = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    for name in ("DecodeChunkMel", "WriteOutputs", "AnalyzeTrainOnly", "TransformChunks",
                 "TransformWindows", "JoinChunks", "WriteTriples", "WriteChunks", "WriteWindows"):
        assert any(l == name or l.startswith(name + "/") for l in labels), name


def test_stage2_defaults_to_in_memory_on_direct_runner_unless_told():
    from birdclef.pipeline import runner

    assert runner.shuffle_bound_args([]) == ["--direct_running_mode=in_memory"]
    told = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert runner.shuffle_bound_args(told) == told
    assert runner.pipeline_options(runner.shuffle_bound_args([])).get_all_options()["direct_num_workers"] == 1


def test_stage1_runs_in_memory_where_worker_process_start_up_outweighs_them():
    from birdclef.pipeline import runner

    in_memory = ["--direct_num_workers=2", "--direct_running_mode=in_memory"]
    assert runner.stage1_args([], 600.0, cores=16)[0] == ["--direct_num_workers=16", in_memory[1]]  # small input
    assert runner.stage1_args([], 2 * 3600.0, cores=2)[0] == in_memory    # 2 h on 2 cores
    assert runner.stage1_args([], 5.3 * 3600, cores=2)[0] == in_memory    # 5.3 h on 2 cores: measured faster
    assert runner.stage1_args([], 2 * 3600.0, cores=4)[0] == []           # 2 h on 4 cores: processes
    assert runner.stage1_args([], 7.3 * 3600, cores=2)[0] == in_memory    # 7.3 h on 2 cores: measured faster
    assert runner.stage1_args([], 30 * 3600.0, cores=2)[0] == []          # 30 h on 2 cores: processes
    assert runner.pipeline_options(in_memory).get_all_options()["direct_num_workers"] == 2  # threads, not 1
    assert runner.stage1_args(["--direct_num_workers=1"], 60.0, cores=2)[0] == ["--direct_num_workers=1",
                                                                                in_memory[1]]
    args, how = runner.stage1_args([], 36000.0, cores=16)                  # 10 h on 16 cores
    assert args == [] and "multi-processing, 16 workers" in how
    opts = runner.pipeline_options(args).get_all_options()
    assert opts["direct_running_mode"] == "multi_processing" and opts["direct_num_workers"] == os.cpu_count()
    told = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert runner.stage1_args(told, 60.0, cores=2)[0] == told              # the user's choice wins
    dataflow = ["--runner=DataflowRunner"]
    assert runner.stage1_args(dataflow, 60.0, cores=2)[0] == dataflow      # other runners: untouched
    assert "overrides" in runner.stage1_args([], 60.0, cores=2)[1]


def test_stage1_reports_progress_per_process(shared_data, capsys):
    from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
    from birdclef.pipeline import stage1_chunks

    paths = sorted((shared_data / "birdclef-mini" / "train_short_audio").glob("*/*.ogg"))[:2]
    items = [{"kind": "recording", "recording_id": p.name, "label": "x", "secondary": [], "split": "train",
              "path": str(p), "seconds": 10.0} for p in paths]
    items.append({**items[0], "recording_id": "gone", "path": str(shared_data / "no-such.ogg")})
    fn = stage1_chunks.ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES, stage1_chunks.Progress(3, 30.0, every_s=0.0))
    fn.setup()
    for item in items:
        list(fn.process(item))
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("transform: stage 1: process")]
    assert len(lines) == 3  # every recording, the quarantined one too
    assert "3 of 3 recordings, 0.01 of 0.01 h of audio" in lines[-1]
    quiet = stage1_chunks.ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES, stage1_chunks.Progress(3, 30.0))
    quiet.setup()
    list(quiet.process(items[0]))  # the default: at most one line per 30 s, counted per run
    assert "transform: stage 1: process" not in capsys.readouterr().err
    assert quiet.progress.start()["n"] == 1


def test_stage1_pins_tf_to_one_thread_only_in_worker_processes():
    """In-memory, stage 1 runs in the user's process, which goes on to stage 2 and (demo) training."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES
        from birdclef.pipeline.stage1_chunks import ChunkRecording
        import tensorflow as tf
        fn = ChunkRecording(DEFAULT_AUDIO, DEFAULT_FEATURES)
        fn.setup()  # built and set up in the same process: the in-memory runner
        print(tf.config.threading.get_intra_op_parallelism_threads())
        fn.built_in = -1  # as if unpickled in a Beam worker process
        fn.setup()
        print(tf.config.threading.get_intra_op_parallelism_threads())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "1"]  # 0: TF's default (all cores)


def test_dataflow_without_project_is_refused_before_submitting():
    from birdclef.pipeline import runner

    problems = runner.check_remote_options(runner.pipeline_options(["--runner=DataflowRunner"]))
    assert any("--project" in p for p in problems) and any("--temp_location" in p for p in problems)
    assert any("--setup_file" in p for p in problems)
    assert any("--requirements_file worker-requirements.txt" in p for p in problems)
    packaged = runner.check_remote_options(runner.pipeline_options(
        ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t",
         "--setup_file=./setup.py"]))
    assert len(packaged) == 1 and "gcsfs" in packaged[0]  # birdclef alone cannot read gs:// on the workers
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wanted = [line.split(">")[0] for line in open(os.path.join(repo, "worker-requirements.txt"))
              if line.strip() and not line.startswith("#")]
    assert wanted == ["gcsfs"]
    dask = runner.check_remote_options(runner.pipeline_options(
        ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"]))
    assert len(dask) == 1 and "DaskRunner is refused" in dask[0]


def test_hand_encoded_examples_parse_to_what_tensorflow_would_have_written():
    import tensorflow as tf

    from birdclef.config import NOCALL

    rng = np.random.default_rng(0)
    mel = rng.standard_normal(records.mel_shape()).astype(np.float32)
    feats = {"recording_id": "caltow/XC1234.ogg", "label": "caltow", "labels": "caltow bewwre é", "split": "val",
             "chunk_index": 300, "row_id": "", "mel": mel}
    ref = tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) if isinstance(v, int) else
        tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v.astype(records.MEL_DTYPE).tobytes() if isinstance(v, np.ndarray) else v.encode()]))
        for k, v in feats.items()}))
    got = records.chunk_example(**feats)
    assert tf.train.Example.FromString(got) == ref
    assert tf.train.Example.FromString(records.encode_example({"i": -5, "b": b"\x00\xff"})) == tf.train.Example(
        features=tf.train.Features(feature={"i": tf.train.Feature(int64_list=tf.train.Int64List(value=[-5])),
                                             "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\xff"]))}))
    parsed = records.parse_batch(tf.constant([got]), records.chunk_feature_spec())
    stored = mel.astype(np.float16).astype(np.float32)  # float16 precision, as the records store it
    assert np.abs(stored - mel).max() > 0 and np.abs(stored - mel).max() <= np.abs(mel).max() * 2 ** -11
    np.testing.assert_array_equal(parsed["mel"].numpy()[0], stored)
    np.testing.assert_array_equal(records.stored_precision_tf(tf.constant(mel)).numpy(), stored)
    assert parsed["chunk_index"].numpy()[0] == 300 and parsed["labels"].numpy()[0].decode() == "caltow bewwre é"
    anchor = {"mel": mel, "label": "a", "recording_id": "a/1.ogg", "chunk_index": 2}
    triple = tf.io.parse_single_example(records.triple_example(
        anchor, {"mel": mel.astype(records.MEL_DTYPE).tobytes()}, {"mel": mel, "label": NOCALL}),
        records.triple_feature_spec())
    assert triple["negative_label"].numpy().decode() == NOCALL and triple["anchor_chunk"].numpy() == 2
    assert triple["positive_mel"].numpy() == triple["anchor_mel"].numpy() == mel.astype(records.MEL_DTYPE).tobytes()


def test_direct_runner_never_tries_prism_so_runs_do_not_depend_on_the_network(tmp_path, monkeypatch):
    """Beam's DirectRunner first tries PrismRunner (a binary downloaded from GitHub); birdclef's does not."""
    import apache_beam as beam
    from apache_beam.runners.portability import prism_runner
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from birdclef.pipeline import runner

    tried = []

    def no_prism(self, *a, **k):
        tried.append(self)
        raise RuntimeError("offline")  # what Beam's own DirectRunner meets here, then falls back

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    for k, args in enumerate(([], ["--direct_running_mode=in_memory"], ["--runner=DirectRunner"])):
        out = tmp_path / str(k) / "out"
        with runner.make_pipeline(args) as p:
            assert isinstance(p.runner, fn_runner.FnApiRunner), args
            p | beam.Create(["a", "b"]) | beam.io.WriteToText(str(out))
        assert sorted(line for f in out.parent.glob("out*") for line in open(f)) == ["a\n", "b\n"]
    assert tried == []
    with beam.Pipeline(options=runner.pipeline_options([])) as p:  # Beam's plain DirectRunner, for contrast
        p | beam.Create(["a"])
    assert len(tried) == 1
    assert not isinstance(runner.make_pipeline(["--runner=PrismRunner"]).runner, fn_runner.FnApiRunner)


def test_stage1_order_deals_equal_audio_to_directrunner_workers():
    from birdclef.pipeline.stage1_chunks import balanced_order

    # as listed (long, short, long, short, ...), DirectRunner's round-robin parts would give every
    # long recording to worker 0
    items = [{"recording_id": str(k), "seconds": 240.0 if k % 2 == 0 else 3.0 + k % 7} for k in range(92)]
    for parts in (1, 2, 3, 4):
        ordered = balanced_order(items, parts)
        assert sorted(i["recording_id"] for i in ordered) == sorted(i["recording_id"] for i in items)
        loads = [sum(i["seconds"] for i in ordered[k::parts]) for k in range(parts)]
        assert max(loads) - min(loads) <= 240.0, (parts, loads)
    as_listed = [sum(i["seconds"] for i in items[k::2]) for k in range(2)]
    loads = [sum(i["seconds"] for i in balanced_order(items, 2)[k::2]) for k in range(2)]
    assert as_listed[0] - as_listed[1] > 10000 and abs(loads[0] - loads[1]) < 20
    assert balanced_order([{"recording_id": "a"}, {"recording_id": "b", "seconds": 2.0}], 2)[0]["recording_id"] == "b"


def test_one_sink_writes_every_output_and_publishes_only_finished_bundles(tmp_path):
    import apache_beam as beam
    import tensorflow as tf

    from birdclef.pipeline import runner
    from birdclef.pipeline.shards import TEMP_PREFIX, WriteShards, _finalize

    out = tmp_path / "out"
    out.mkdir()
    (out / "a-00000-of-00009.tfrecord").write_bytes(b"stale")  # an earlier run's shard
    (out / "notes.txt").write_text("mine")
    records = [("a", b"rec%d" % k) for k in range(50)] + [("t", json.dumps({"k": 1})), ("train/chunks", b"x")]
    suffixes = {"a": ".tfrecord", "t": ".jsonl", "train/chunks": ".tfrecord", "empty": ".tfrecord"}
    with runner.make_pipeline(["--direct_running_mode=in_memory", "--direct_num_workers=2"]) as p:
        p | beam.Create(records) | beam.Reshuffle() | WriteShards(str(out), suffixes)
    shards = sorted(out.glob("a-*.tfrecord"))
    n = len(shards)
    assert n == 2  # one per worker's bundle
    assert [s.name for s in shards] == [f"a-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
    assert sorted(r.numpy() for r in tf.data.TFRecordDataset([str(s) for s in shards])) == sorted(
        v for d, v in records if d == "a")
    assert [json.loads(line) for f in out.glob("t-*.jsonl") for line in open(f)] == [{"k": 1}]
    nested = out / "train" / "chunks-00000-of-00001.tfrecord"
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(nested))] == [b"x"]
    assert (out / "empty-00000-of-00001.tfrecord").stat().st_size == 0  # declared, no records: still there
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob(TEMP_PREFIX + "*"))

    # a bundle that failed (and was retried) left a file no finished bundle reported: never published
    temp = out / (TEMP_PREFIX + "x")
    temp.mkdir()
    (temp / "orphan").write_bytes(b"half")
    (temp / "done").write_bytes(b"new")
    (out / "b-00000-of-00001.tfrecord").write_bytes(b"an earlier run's")  # same name: replaced
    (out / "b-00001-of-00002.tfrecord").write_bytes(b"an earlier run's")  # other name: deleted
    written = [("b", str(temp / "done"), 1)]
    _finalize(written, str(out), {"b": ".tfrecord"}, str(temp))
    assert sorted(f.name for f in out.glob("b-*")) == ["b-00000-of-00001.tfrecord"] and not temp.exists()
    _finalize(written, str(out), {"b": ".tfrecord"}, str(temp))  # run again by the runner: nothing lost
    assert (out / "b-00000-of-00001.tfrecord").read_bytes() == b"new"
    with pytest.raises(FileNotFoundError, match="gone"):
        _finalize([("c", str(temp / "lost"), 1)], str(out), {"c": ".tfrecord"}, str(temp))

    with pytest.raises(Exception, match="undeclared output 'c'"):
        with runner.make_pipeline(["--direct_running_mode=in_memory"]) as p:
            p | beam.Create([("c", b"x")]) | WriteShards(str(tmp_path / "other"), {"a": ".tfrecord"})


def test_stage2_warns_before_it_would_outgrow_memory_on_direct_runner():
    from birdclef.pipeline import runner

    assert runner.stage2_memory_warning(4031, 2 * 1024.0) is None        # measured 1.2 GB: fits
    assert runner.stage2_memory_warning(180000, 24 * 1024.0) is None      # ~50 h of audio on 24 GB
    warning = runner.stage2_memory_warning(5_000_000, 16 * 1024.0)        # ~1400 h on 16 GB
    assert "25.7 GB" in warning and "16.0 GB is available" in warning and "--runner FlinkRunner" in warning
    assert runner.stage2_memory_warning(10 ** 9, None) is None             # unknown: no guess
    available = runner.available_memory_mb()
    assert available is None or 0 < available < 2 ** 30
    assert runner.is_direct([]) and runner.is_direct(["--runner=DirectRunner"])
    assert not runner.is_direct(["--runner", "DataflowRunner"])
