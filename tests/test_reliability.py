"""Adversarial input: non-finite audio, full disks, half-written bookkeeping, hostile flag values,
inputs given twice (issue 13)."""
import errno
import json
import os

import numpy as np
import pytest
import soundfile as sf

from birdclef import audio, cli, fileio, predict, stages


def _wav(path, x, sr=32000):
    sf.write(str(path), np.asarray(x, np.float32), sr, subtype="FLOAT")
    return str(path)


@pytest.mark.parametrize("bad, count", [(np.nan, 10), (np.inf, 2)])
def test_non_finite_samples_are_a_reason_of_their_own_with_their_count(tmp_path, bad, count):
    x = 0.1 * np.sin(np.arange(32000 * 6) / 7.0)
    x[1000:1000 + count] = bad
    path = _wav(tmp_path / "nan.wav", x)
    with pytest.raises(audio.AudioError) as e:
        audio.load(path)
    assert e.value.reason == "non_finite" and f"{count} of" in str(e.value) and "fix" not in e.value.reason
    # a short all-NaN file is not `silent`: its samples are broken, not quiet
    with pytest.raises(audio.AudioError) as e:
        audio.load(_wav(tmp_path / "short.wav", np.full(8000, np.nan)))
    assert e.value.reason == "non_finite"


def test_validate_decode_reports_non_finite_files(tmp_path, capsys, synth_small):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_small, data)
    victim = sorted((data / "train_short_audio").rglob("*.ogg"))[0]
    x = audio.load(str(victim))
    x[:5] = np.nan
    # vorbis cannot hold NaN: a float WAV under the .ogg name (libsndfile reads by content, not suffix)
    sf.write(str(victim), x, 32000, format="WAV", subtype="FLOAT")
    assert cli.main(["validate", "--data-dir", str(data), "--decode"]) == 0
    out = capsys.readouterr().out
    assert f"{victim}: non_finite" in out and "5 of" in out


def test_writes_are_atomic_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    fileio.write_json(str(path), {"a": 1})
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        fileio.write_json(str(path), {"a": 2})
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["run.json"]  # no temp file left behind


@pytest.mark.parametrize("content", ["", '{"params": {"thr', "\x00\x00"])
def test_empty_or_cut_bookkeeping_files_are_redone_not_fatal(tmp_path, content):
    params_file = tmp_path / "predict.json"
    params_file.write_text(content)
    stages.claim(str(params_file), {"threshold": 0.5}, "predictions", "choose another --out")
    assert json.loads(params_file.read_text())["params"] == {"threshold": 0.5}
    (tmp_path / "_SUCCESS.json").write_text(content)
    assert stages.is_done(str(tmp_path), {"x": 1}, "stage") is False  # not finished: it runs again


def test_a_full_disk_ends_with_one_line_naming_the_path_and_a_rerun_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "synth"
    real = fileio.write_bytes
    calls = [0]

    def fills_up(path, data):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(path, data)

    monkeypatch.setattr(fileio, "write_bytes", fills_up)
    args = ["synth", "--out", str(out), "--species", "2", "--recordings-per-species", "2", "--soundscapes", "0"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no space left" in err and str(out) in err and "run the same command again" in err
    monkeypatch.setattr(fileio, "write_bytes", real)
    assert cli.main(args) in (0, 2)  # synth refuses a folder it did not finish, or remakes it
    err = capsys.readouterr().err
    assert "Traceback" not in err


@pytest.fixture
def small_disks(tmp_path):
    """Real filesystems that fill up: tmpfs mounts of a given size (root only: CI runs as root). Yields
    (mount(name, size) -> mount point, resize(point, size)), so a test can free space as a user would."""
    import subprocess

    points = []

    def mount(name: str, size: str):
        point = tmp_path / name
        point.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                               capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs needs root (CI has it)")
        points.append(point)
        return point

    def resize(point, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)
    try:
        yield mount, resize
    finally:
        for point in points:
            subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_really_full_disk_stops_train_predict_and_embed_in_one_line_and_they_finish_once_space_is_freed(
        tiny_model, shared_data, small_disks, capsys):
    """The injected ENOSPC above, on a real filesystem: TensorFlow's checkpoint writer says it its own way
    (its error once led the message to name '/job' instead of the checkpoint)."""
    mount, resize = small_disks
    disk = mount("ckpt", "3m")
    root, model = tiny_model
    ckpt = str(disk / "ck")  # a checkpoint of the tiny model is about 3 MB: the first one does not fit
    args = ["train", "--data-path", str(root / "w"), "--ckpt-dir", ckpt, "--batch-size", "8", "--epochs", "2",
            "--steps-per-epoch", "2", "--no-jit"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "no space left" in err and f"writing {ckpt}" in err and "/job" not in err, err
    resize(disk, "64m")
    assert cli.main(args) == 0
    metrics = json.loads((disk / "ck" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]

    # predict: outputs of a few pages fill the disk part-way through the files
    disk = mount("pred", "12k")
    sounds = sorted(str(p) for p in (shared_data / "birdclef-mini" / "train_soundscapes").glob("*.ogg"))
    out = disk / "pred"
    assert cli.main(["predict", *sounds, "--ckpt-dir", model, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no space left" in err and str(out) in err, err
    resize(disk, "4m")
    assert cli.main(["predict", *sounds, "--ckpt-dir", model, "--out", str(out)]) == 0
    rows = (out / "submission.csv").read_text().splitlines()[1:]
    ids = [r.split(",")[0] for r in rows]
    assert len(ids) == len(set(ids)) == sum(predict.n_windows(len(audio.load(p))) for p in sounds)

    # embed: SQLite says 'database or disk is full', once taken for 'not an embedding database'
    disk = mount("db", "12k")
    db = str(disk / "e.sqlite")
    assert cli.main(["embed", *sounds, "--ckpt-dir", model, "--db", db]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"no space left on the device writing {db}" in err, err
    resize(disk, "4m")
    assert cli.main(["embed", *sounds, "--ckpt-dir", model, "--db", db]) == 0

    # review: a label given on a full disk is refused with a line the page shows; the ones before stay
    from birdclef import review

    store = review.Store(db)
    store.set_label(0, "not")
    filler = disk / "filler"
    with open(filler, "wb") as f:
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    with pytest.raises(review.ReviewError, match="is full: this label was not kept"):
        for i in range(1, 200):  # SQLite fills its free pages first
            store.set_label(i, "unsure")
    filler.unlink()
    assert store.set_label(1, "not")["label"] == "not"
    assert store.con().execute("SELECT label FROM label ORDER BY rowid").fetchone()[0] == "not"


def test_a_really_full_disk_stops_both_transform_stages_in_one_line_and_a_rerun_finishes(
        tiny_model, small_disks, capsys):
    """Beam wraps the write's error, which names no file, in its step name ('WriteOutputs/WriteBundles',
    once taken for the path) and logged a traceback before it: now one line naming the shard's path."""
    import shutil

    mount, resize = small_disks
    root, _ = tiny_model
    disk = mount("work", "600k")  # the preprocess output fits, stage 1's chunks do not
    shutil.copytree(root / "w" / "preprocess", disk / "preprocess")
    for stage in ("chunks", "tft"):
        assert cli.main(["transform", "--work-dir", str(disk)]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"writing {disk}/transform/{stage}/" in err and "WriteBundles" not in err, err
        # free space for stage 1's output (as big as the fixture's) and 1 MB more: stage 2 then fills the disk
        chunks = sum(f.stat().st_size for f in (root / "w" / "transform" / "chunks").rglob("*") if f.is_file())
        resize(disk, f"{(shutil.disk_usage(disk).used + chunks) // 1024 + 1024}k")
    resize(disk, "64m")
    assert cli.main(["transform", "--work-dir", str(disk)]) == 0
    ref = json.loads((root / "w" / "transform" / "manifest.json").read_text())
    got = json.loads((disk / "transform" / "manifest.json").read_text())
    for k in ("chunks_per_split", "triples_per_split", "soundscape_windows", "processed", "quarantined"):
        assert got[k] == ref[k], k


def test_full_disk_is_found_through_wrapped_errors():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/w/transform/tft/x.tfrecord")
        except OSError as e:
            raise RuntimeError("Beam stage failed") from e
    except RuntimeError as wrapped:
        assert cli.disk_full(wrapped) == "/w/transform/tft/x.tfrecord"
    assert cli.disk_full(RuntimeError("ResourceExhausted: /ck/ckpt-3.index; No space left on device")) == \
        "/ck/ckpt-3.index"
    assert cli.disk_full(ValueError("something else")) is None
    # the texts a real full disk gave (the tmpfs tests above, which need root): TensorFlow's checkpoint
    # writer, with a device name before a relative path, and Beam's wrapped OSError after its step name
    tf_text = ("{{function_node __wrapped__SaveV2_dtypes_179_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
               "ck/ckpt/ckpt-1_temp/part-00000-of-00001.data-00000-of-00001.tempstate92128; No space left on "
               "device [Op:SaveV2]")
    assert cli.disk_full(RuntimeError(tf_text)) == "ck/ckpt/ckpt-1_temp/part-00000-of-00001.data-00000-of-00001"
    beam_text = ("OSError: [Errno 28] No space left on device: 'w/transform/chunks/.shards-tmp-1/2' "
                 "[while running 'WriteOutputs/WriteBundles']")
    assert cli.disk_full(RuntimeError(beam_text)) == "w/transform/chunks/.shards-tmp-1/2"
    assert cli.disk_full(RuntimeError("OSError: [Errno 28] No space left on device [while running 'A/B']")) == ""


HOSTILE = [
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--epochs", "0"], "--epochs"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--epochs", "-1"], "--epochs"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--batch-size", "0"], "--batch-size"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--lr", "0"], "--lr"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--lr", "nan"], "--lr"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--data-percent", "0"], "--data-percent"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--data-percent", "150"], "--data-percent"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--steps-per-epoch", "-3"], "--steps-per-epoch"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--max-reads", "0.5"], "--max-reads"),
    (["evaluate", "c", "--work-dir", "w", "--threshold", "1.5"], "--threshold"),
    (["evaluate", "c", "--work-dir", "w", "--threshold", "0"], "--threshold"),
    (["predict", "x.ogg", "--ckpt-dir", "c", "--out", "o", "--threshold", "nan"], "--threshold"),
    (["preprocess", "--work-dir", "w", "--data-dir", "d", "--test-percent", "nan"], "--test-percent"),
    (["preprocess", "--work-dir", "w", "--data-dir", "d", "--test-percent", "150"], "--test-percent"),
    (["preprocess", "--work-dir", "w", "--data-dir", "d", "--test-percent", "0.6", "--val-percent", "0.5"],
     "--val-percent"),
    (["validate", "--data-dir", "d", "--min-duration", "-1"], "--min-duration"),
    (["synth", "--out", "o", "--species", "0"], "--species"),
    (["synth", "--out", "o", "--recordings-per-species", "0"], "--recordings-per-species"),
    (["synth", "--out", "o", "--soundscapes", "-1"], "--soundscapes"),
    (["demo", "--epochs", "0"], "--epochs"),
    (["transform", "--work-dir", "w", "--runner", "FooRunner"], "--runner FooRunner"),
    (["transform", "--work-dir", "w", "--direct_num_workers=0"], "--direct_num_workers"),
    (["transform", "--work-dir", "w", "--tmep_location", "/tmp/x"], "--tmep_location"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--ema", "1"], "--ema"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--weight-decay", "1"], "--weight-decay"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--weight-decay", "-0.1"], "--weight-decay"),
    (["predict", "x.ogg", "--ckpt-dir", "c", "--out", "o", "--presence-threshold", "0"], "--presence-threshold"),
    (["search", "--db", "d", "--query", "q.wav", "-k", "0"], "-k"),
    (["search", "--db", "d", "--query", "q.wav", "--index", "fast"], "--index"),
    (["review", "--db", "d", "--port", "70000"], "--port"),
    (["review", "--db", "d", "--port", "0"], "--port"),
]


@pytest.mark.parametrize("args, flag", HOSTILE, ids=[" ".join(a[-2:]) for a, _ in HOSTILE])
def test_out_of_range_values_are_refused_at_once_naming_the_flag(tmp_path, monkeypatch, capsys, args, flag):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:  # argparse: exit 2 after one error line (and its usage line)
        rc = cli.main(args)
        raise SystemExit(rc)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []  # nothing was written


def test_a_percent_given_as_a_whole_number_is_read_as_percent_and_said(capsys):
    assert cli.share("10") == pytest.approx(0.1)
    assert "10 %" in capsys.readouterr().err
    assert cli.share("0.1") == pytest.approx(0.1)


def test_inputs_reached_twice_are_read_once_and_row_ids_never_repeat(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for d in (a, b):
        (d / "x.ogg").write_bytes(b"")
    (a / "y.ogg").write_bytes(b"")
    files, twice = predict.input_files([str(a), str(a / "x.ogg"), str(a / ".." / "a" / "y.ogg"), str(b)])
    assert files == [str(a / "x.ogg"), str(a / "y.ogg"), str(b / "x.ogg")]
    assert len(twice) == 2
    prefixes = predict.row_prefixes(files)
    assert len(set(prefixes.values())) == 3 and prefixes[str(a / "y.ogg")] == "y"
    assert prefixes[str(a / "x.ogg")].startswith("x-") and prefixes[str(b / "x.ogg")].startswith("x-")


def test_a_file_without_read_permission_is_named_as_such(tmp_path, monkeypatch):
    path = _wav(tmp_path / "locked.wav", 0.1 * np.ones(32000))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == path else real(p, mode))  # tests run as root
    with pytest.raises(audio.AudioError) as e:
        audio.load(path)
    assert e.value.reason == "permission_denied" and "chmod" in str(e.value)


def test_a_second_run_on_a_locked_folder_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    with stages.locked(str(out), "birdclef predict"):
        lock = json.loads((out / stages.LOCK).read_text())
        assert lock["pid"] == os.getpid()
        # another process on the folder: refused, naming the holder
        code = ("import sys; from birdclef import stages\n"
                "try:\n    stages.locked(sys.argv[1], 'birdclef predict').__enter__()\n"
                "except stages.StageConflict as e:\n    print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3 and f"pid {os.getpid()}" in r.stdout and "in use by birdclef predict" in r.stdout
    assert not (out / stages.LOCK).exists()  # released
    # a lock left by a process that is gone (a kill -9) is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / stages.LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": __import__("socket").gethostname(),
                                               "started": "earlier", "what": "birdclef train"}))
    with stages.locked(str(out), "birdclef train"):
        assert json.loads((out / stages.LOCK).read_text())["pid"] == os.getpid()


def test_a_file_that_is_not_a_database_is_refused_in_one_line_by_every_database_command(tiny_model, tmp_path, capsys):
    _, ckpt = tiny_model
    db = tmp_path / "notes.sqlite"
    db.write_text("not a database\n" * 100)
    clip = _wav(tmp_path / "clip.wav", 0.1 * np.sin(np.arange(32000 * 3) / 5.0))
    for args in (["embed", clip, "--ckpt-dir", ckpt, "--db", str(db)], ["search", "--db", str(db), "--query", clip],
                 ["review", "--db", str(db)], ["classify", "--db", str(db), "--out", str(tmp_path / "c2")]):
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(db) in err and len(err.strip().splitlines()) == 1, (args, err)
    assert db.read_text().startswith("not a database")  # nothing of the user's was overwritten


CORRUPT_REASONS = {"empty.ogg": "empty", "truncated.ogg": "truncated", "not_audio.ogg": "not_audio",
                   "too_short_0.2s.wav": "too_short"}  # the rest of ../shared/data/corrupt is awkward but readable


def test_every_corrupt_fixture_is_accounted_for_by_predict_embed_and_search(tiny_model, shared_data, tmp_path,
                                                                            capsys):
    """Each of the 8 corrupt fixtures, given to every command that reads audio: scored or skipped with its
    reason (never both, never neither), the rest goes on, and no traceback."""
    import sqlite3

    import pandas as pd

    _, ckpt = tiny_model
    corrupt = sorted(str(p) for p in (shared_data / "corrupt").iterdir() if p.suffix in (".ogg", ".wav"))
    assert len(corrupt) == 8 and set(map(os.path.basename, corrupt)) >= set(CORRUPT_REASONS)
    good = _wav(tmp_path / "good.wav", 0.1 * np.sin(np.arange(32000 * 6) / 5.0))

    out = tmp_path / "pred"
    assert cli.main(["predict", *corrupt, good, "--ckpt-dir", ckpt, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    q = pd.read_csv(out / "quarantine.csv")
    scored = set(pd.read_csv(out / "scores.csv").file)
    assert dict(zip(q.path.map(os.path.basename), q.reason)) == CORRUPT_REASONS
    assert scored | set(q.path) == set(corrupt) | {good} and not scored & set(q.path)

    db = str(tmp_path / "emb.sqlite")
    assert cli.main(["embed", *corrupt, good, "--ckpt-dir", ckpt, "--db", db]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name, reason in CORRUPT_REASONS.items():
        assert sum(name in line and reason in line for line in err.splitlines()) == 1, (name, err)
    stored = {os.path.basename(p) for (p,) in sqlite3.connect(db).execute("SELECT path FROM recording WHERE done")}
    assert stored == {os.path.basename(p) for p in corrupt + [good]} - set(CORRUPT_REASONS)

    for path in corrupt:
        code = cli.main(["search", "--db", db, "--query", path, "-k", "3", "--out", str(tmp_path / "hits.csv")])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if os.path.basename(path) in CORRUPT_REASONS:  # refused in one line naming the file and its reason
            assert code == 2 and path in err and CORRUPT_REASONS[os.path.basename(path)] in err, (path, err)
            assert len(err.strip().splitlines()) == 1, err
        else:
            assert code == 0, (path, err)
