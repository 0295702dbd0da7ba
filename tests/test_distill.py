"""`birdclef train --teacher` (issue 16): the class head learns a trained model's probabilities beside the
labels, so one network can carry an ensemble's quality."""
import json
import shutil

import numpy as np

from birdclef import cli, features, models, train


def test_the_step_trains_on_the_mixed_targets_of_labels_and_teacher():
    import tensorflow as tf
    import tf_keras as keras

    shape = features.mel_shape()
    tf.random.set_seed(0)
    model = models.build("dilated_cnn", shape, 16, 4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((6, *shape)).astype(np.float32))
    y = tf.constant([0, 1, 2, 3, 0, 1], tf.int64)  # class 3 is nocall
    t_scores = tf.constant(rng.uniform(0, 1, (6, 4)).astype(np.float32))
    t_bird = tf.constant(rng.uniform(0, 1, 6).astype(np.float32))
    cfg = train.TrainConfig(data_path="", ckpt_dir="", loss="classify", jit_compile=False, distill=0.3,
                            teacher="t")
    step = train.make_train_step(model, keras.optimizers.SGD(0.0), cfg, teacher=lambda _: (t_scores, t_bird))
    plain = train.make_train_step(model, keras.optimizers.SGD(0.0), cfg)
    got, without = float(step(x, y)), float(plain(x, y))
    out = model(x, training=True)  # lr 0: the weights the steps saw; batch norm on this batch's statistics
    hard = tf.one_hot(y, 4)
    bird = tf.cast(tf.logical_and(y >= 0, y != 3), tf.float32)
    want = train.class_losses(out, y, 0.7 * hard + 0.3 * t_scores, 3, bird_target=0.7 * bird + 0.3 * t_bird)
    assert abs(got - float(want)) < 1e-4
    assert abs(got - without) > 1e-3  # the teacher changed the targets


def test_a_student_trains_from_an_ensemble_and_bad_teachers_are_refused(tiny_pair, tmp_path, capsys):
    root, a, _, ens = tiny_pair
    base = ["--data-path", str(root / "w"), "--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "2", "--no-jit"]
    student = tmp_path / "student"
    assert cli.main(["train", *base, "--ckpt-dir", str(student), "--teacher", ens, "--distill", "0.7"]) == 0
    assert "distilling" in capsys.readouterr().out
    ident = json.loads((student / "run.json").read_text())["identity"]
    assert ident["teacher"] == ens and ident["distill"] == 0.7  # part of the run: another teacher is refused
    assert cli.main(["train", *base, "--ckpt-dir", str(student), "--teacher", a]) == 2
    assert "teacher" in capsys.readouterr().err

    # refused: not a model (before TensorFlow), a loss without a class head, another data set's classes
    assert cli.main(["train", *base, "--ckpt-dir", str(tmp_path / "x"), "--teacher", str(tmp_path)]) == 2
    assert "not a finished" in capsys.readouterr().err
    assert cli.main(["train", *base, "--ckpt-dir", str(tmp_path / "y"), "--teacher", a, "--loss", "batch_hard"]) == 2
    assert "--loss batch_hard+classify" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(a, other)
    info = json.loads((other / "export" / "birdclef.json").read_text())
    (other / "export" / "birdclef.json").write_text(json.dumps({**info, "classes": info["classes"][::-1]}))
    assert cli.main(["train", *base, "--ckpt-dir", str(tmp_path / "z"), "--teacher", str(other)]) == 2
    err = capsys.readouterr().err
    assert "classes differ" in err and "Traceback" not in err
