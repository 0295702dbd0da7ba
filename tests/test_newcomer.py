"""A newcomer's first hour (issue 17): refusals come before TensorFlow is imported, quietly."""
import os
import subprocess
import sys

import pytest

from birdclef import config, models


def _run(args, cwd):
    """cli.main(args) in a fresh interpreter; returns (exit code, stderr, whether TF was imported)."""
    code = ("import sys; from birdclef import cli; rc = cli.main(sys.argv[1:]); "
            "print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=str(cwd), timeout=120)
    return r.returncode, r.stderr, r.stdout.strip().splitlines()[-1] == "TF"


@pytest.mark.parametrize("args, says", [
    (["train"], "--data-path"),
    (["train", "--data-path", "nowhere", "--ckpt-dir", "c"], "does not exist"),
    (["train", "--data-path", ".", "--ckpt-dir", "c"], "no finished preprocess"),
    (["train", "--data-path", "w", "--ckpt-dir", "c", "--model", "vgg"], "--model"),
    (["predict", "x.ogg", "--ckpt-dir", "nomodel", "--out", "o"], "no exported model"),
    (["evaluate", "nomodel", "--work-dir", "nowhere"], "does not exist"),
    (["transform", "--work-dir", "nowhere"], "does not exist"),
    (["ensemble", "w", "nomodel", "--out", "e"], "not a finished `birdclef train` run"),
])
def test_refusals_answer_before_tensorflow_is_imported(tmp_path, args, says):
    (tmp_path / "w").mkdir()
    rc, err, tf_imported = _run(args, tmp_path)
    assert rc == 2 and says in err and "Traceback" not in err, err
    assert not tf_imported, f"{args}: TensorFlow was imported before the refusal"
    assert len(err.strip().splitlines()) == 1, err


def test_train_on_a_preprocessed_but_untransformed_work_dir_says_to_run_transform(tmp_path):
    (tmp_path / "w" / "preprocess").mkdir(parents=True)
    (tmp_path / "w" / "preprocess" / "_SUCCESS.json").write_text('{"params": {}}')
    rc, err, tf_imported = _run(["train", "--data-path", "w", "--ckpt-dir", "c"], tmp_path)
    assert rc == 2 and "birdclef transform --work-dir w" in err and "preprocess --work-dir" not in err
    assert not tf_imported


def test_the_command_line_knows_every_architecture_without_importing_them():
    assert tuple(models.REGISTRY) == config.ARCHITECTURES


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    code = "from birdclef.features import quiet_tensorflow_import; quiet_tensorflow_import(); print('ok')"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "absl::InitializeLog" not in quiet.stderr and "cuda" not in quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr


def test_both_flag_spellings_are_accepted_and_help_shows_one():
    from birdclef import cli

    parser = cli.build_parser()
    old = ["train", "--data_path", "w", "--ckpt_dir", "c", "--batch_size", "8", "--data_percent=50",
           "--steps_per_epoch", "3", "--no_jit"]
    new = ["train", "--data-path", "w", "--ckpt-dir", "c", "--batch-size", "8", "--data-percent=50",
           "--steps-per-epoch", "3", "--no-jit"]
    a = parser.parse_args(cli.one_style(parser, old))
    b = parser.parse_args(cli.one_style(parser, new))
    assert vars(a) == vars(b) and a.data_path == "w" and a.batch_size == 8 and a.data_percent == 50 and a.no_jit
    # Beam's own options pass through to transform untouched
    beam = ["transform", "--work-dir", "w", "--direct_num_workers=2", "--temp_location", "gs://b/t"]
    assert cli.one_style(parser, beam) == beam
    # the work-dir style of other commands also takes underscores
    assert parser.parse_args(cli.one_style(parser, ["preprocess", "--work_dir", "w", "--data_dir", "d"])).data_dir == "d"
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        shown = [o for a in p._actions for o in a.option_strings if o.startswith("--")]
        assert not [o for o in shown if "_" in o], f"{name} --help shows underscore flags"


@pytest.mark.parametrize("relative", [False, True])
def test_validate_accounts_for_every_audio_file_by_kind(synth_small, tmp_path, capsys, monkeypatch, relative):
    import shutil

    from birdclef import cli

    data = tmp_path / "data"
    shutil.copytree(synth_small, data)
    first = sorted((data / "train_short_audio").rglob("*.ogg"))[0]
    shutil.copy(first, first.parent / "not_in_metadata.ogg")
    recordings = len(sorted((data / "train_short_audio").rglob("*.ogg"))) - 1
    soundscapes = len(list((data / "train_soundscapes").glob("*.ogg")))
    nonbird = len(list((data / "nonbird").rglob("*.ogg")))
    if relative:  # as the demo and most users give it: only the one unlisted file is unlisted
        monkeypatch.chdir(tmp_path)
    where = "data" if relative else str(data)
    assert cli.main(["validate", "--data-dir", where, "--nonbird-dir", f"{where}/nonbird"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    total = recordings + soundscapes + nonbird
    assert f"{total} of {total} audio files usable" in last, last
    assert f"recordings {recordings}/{recordings}" in last and f"soundscapes {soundscapes}/{soundscapes}" in last
    assert f"non-bird {nonbird}/{nonbird}" in last and "1 file(s) in train_short_audio/ not in the metadata" in last


def test_inputs_keep_the_users_spelling_so_result_tables_travel(tmp_path, monkeypatch):
    from birdclef import predict

    (tmp_path / "site" / "a").mkdir(parents=True)
    for name in ("site/x.ogg", "site/a/y.ogg"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    files, _ = predict.input_files(["site"])
    assert files == [os.path.join("site", "a", "y.ogg"), os.path.join("site", "x.ogg")]  # not /tmp/.../site/...
    files, _ = predict.input_files([str(tmp_path / "site")])
    assert files[0] == str(tmp_path / "site" / "a" / "y.ogg")


def test_help_shows_every_option_a_command_takes():
    """transform --help lists the runner and Beam options, train --help marks its required flags and lists
    the architectures, compare --help says it takes positional model folders (issue 17)."""
    from birdclef import cli

    sub = next(a for a in cli.build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {name: " ".join(p.format_help().split()) for name, p in sub.choices.items()}
    for option in ("--runner", "DataflowRunner", "FlinkRunner", "SparkRunner", "--direct_num_workers",
                   "--temp_location", "--flink_master", "--spark_master_url"):
        assert option in helps["transform"], option
    assert "--data-path DATA_PATH required" in helps["train"] and "--ckpt-dir CKPT_DIR required" in helps["train"]
    assert all(name in helps["train"] for name in config.ARCHITECTURES)
    assert "positional arguments: ckpt_dirs" in helps["compare"] and "--ckpt-dir" not in helps["compare"]
