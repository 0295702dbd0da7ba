"""A newcomer's first hour (issue 17): refusals come before TensorFlow is imported, quietly."""
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
    (["train"], "--data_path"),
    (["train", "--data_path", "nowhere", "--ckpt_dir", "c"], "does not exist"),
    (["train", "--data_path", ".", "--ckpt_dir", "c"], "no finished preprocess"),
    (["train", "--data_path", "w", "--ckpt_dir", "c", "--model", "vgg"], "--model"),
    (["predict", "x.ogg", "--ckpt_dir", "nomodel", "--out", "o"], "no exported model"),
    (["evaluate", "nomodel", "--work-dir", "nowhere"], "does not exist"),
    (["transform", "--work-dir", "nowhere"], "does not exist"),
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
    rc, err, tf_imported = _run(["train", "--data_path", "w", "--ckpt_dir", "c"], tmp_path)
    assert rc == 2 and "birdclef transform --work-dir w" in err and "preprocess --work-dir" not in err
    assert not tf_imported


def test_the_command_line_knows_every_architecture_without_importing_them():
    assert tuple(models.REGISTRY) == config.ARCHITECTURES


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    code = "from birdclef.features import quiet_tensorflow_import; quiet_tensorflow_import(); print('ok')"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "absl::InitializeLog" not in quiet.stderr and "cuda" not in quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
