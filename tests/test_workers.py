"""`predict --workers`: files spread over processes give the same outputs as one process."""
import pandas as pd
import pytest

from birdclef import cli, workers


@pytest.fixture(scope="module")
def onnx_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model as ONNX, written outside its run folder (test_onnx exports into that one itself)."""
    _, ckpt = tiny_model
    path = tmp_path_factory.mktemp("workers") / "model.onnx"
    assert cli.main(["export", "--ckpt-dir", ckpt, "--out", str(path)]) == 0
    return str(path)


def test_auto_uses_workers_only_for_onnx_models_with_files_to_share():
    assert workers.auto_workers("m/model.onnx", 100, cpus=2) == 2
    assert workers.auto_workers("m/model.onnx", 5, cpus=2) == 1  # fewer than 4 files per worker
    assert workers.auto_workers("ckpt_dir", 100, cpus=2) == 1  # a SavedModel: TensorFlow per worker costs too much


def test_files_over_two_workers_give_what_one_process_gives_and_bad_files_are_accounted(
        onnx_model, shared_data, tmp_path, capsys):
    model = onnx_model
    files = sorted((shared_data / "birdclef-mini" / "train_short_audio").rglob("*.ogg"))[:9]
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"OggS not really")
    inputs = [str(f) for f in files] + [str(bad)]
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["predict", *inputs, "--ckpt-dir", model, "--out", str(one), "--workers", "1"]) == 0
    assert cli.main(["predict", *inputs[:4], "--ckpt-dir", model, "--out", str(two), "--workers", "2"]) == 0
    capsys.readouterr()
    # the rest, resumed: the first four files' parts are kept, the others spread over two processes
    assert cli.main(["predict", *inputs, "--ckpt-dir", model, "--out", str(two), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "6 files over 2 worker processes" in out and "(4 from an earlier run)" in out and "1 skipped" in out
    a, b = (pd.read_csv(d / "scores.csv", keep_default_na=False) for d in (one, two))
    pd.testing.assert_frame_equal(a, b)
    assert (one / "submission.csv").read_text() == (two / "submission.csv").read_text()
    q = pd.read_csv(two / "quarantine.csv")
    assert list(q.path) == [str(bad)] and "broken.ogg" in q.message[0]


def test_workers_flag_refuses_what_is_not_a_count(capsys):
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as e:
            cli.main(["predict", "x.ogg", "--ckpt-dir", "c", "--out", "o", "--workers", bad])
        assert e.value.code == 2 and "--workers" in capsys.readouterr().err


def test_a_worker_that_dies_is_one_line_and_the_finished_files_are_kept(onnx_model, shared_data, tmp_path,
                                                                        monkeypatch, capsys):
    model = onnx_model
    files = sorted((shared_data / "birdclef-mini" / "train_short_audio").rglob("*.ogg"))[:4]
    doomed = tmp_path / "doomed.ogg"  # a worker exits (as if killed) when it reaches this one
    doomed.write_bytes(files[0].read_bytes())
    monkeypatch.setenv("BIRDCLEF_TEST_WORKER_EXIT_ON", str(doomed))
    out = tmp_path / "p"
    args = ["predict", *map(str, files), str(doomed), "--ckpt-dir", model, "--out", str(out), "--workers", "2"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "worker process stopped" in err and "--workers 1" in err
    monkeypatch.delenv("BIRDCLEF_TEST_WORKER_EXIT_ON")
    assert cli.main(args) == 0  # run again: done
    assert len(pd.read_csv(out / "scores.csv")) >= 5
