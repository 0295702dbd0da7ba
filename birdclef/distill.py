"""Knowledge distillation (`birdclef train --teacher E`): a single network learns from a trained model's
(usually an ensemble's) probabilities as well as from the labels, to carry the ensemble's quality at one
network's inference cost.

The class head's targets become (1 - d) * labels + d * teacher scores, and the bird-presence target
(1 - d) * label + d * teacher presence, with d = `--distill` (0.5 by default), on the very chunks the
student sees (augmented ones included). The teacher runs on the same normalised log-mels the student
reads, so it must have been trained on the same transform output: same classes in the same order and the
same fitted normalisation (refused otherwise). Its networks only run forward, and training takes about
the teacher's inference on top of the student's step.
"""
from __future__ import annotations

import numpy as np

from birdclef import fileio
from birdclef.config import DEFAULT_FEATURES, FeatureConfig


class DistillError(Exception):
    pass


def check_folder(path: str) -> str | None:
    """The problem with a --teacher folder, in one line with the fix (no TensorFlow needed), or None."""
    from birdclef import ensemble

    if not ensemble.is_finished(path):
        return (f"--teacher {path}: not a finished `birdclef train` run or `birdclef ensemble` (run.json and "
                "export/); fix: pass the --ckpt-dir of one, trained on the same --data-path")
    return None


def teacher(path: str, classes: list[str], tft_dir: str, cfg: FeatureConfig = DEFAULT_FEATURES):
    """A function x -> (scores [b, C], bird [b]) of the teacher's networks (their mean) on normalised
    log-mels x, for `make_train_step`; DistillError when the teacher does not fit this data."""
    import tensorflow as tf

    from birdclef import ensemble, export
    from birdclef.pipeline.stage2_tft import fitted_normalisation

    problem = check_folder(path)
    if problem:
        raise DistillError(problem)
    info = fileio.read_json(fileio.join(path, "export", "birdclef.json")) or {}
    if info.get("classes") != classes:
        raise DistillError(f"--teacher {path}: its classes differ from this data's ({len(info.get('classes') or [])} "
                           f"against {len(classes)}); fix: use a teacher trained on the same --data-path")
    mean, std = fitted_normalisation(tft_dir, cfg)
    members = ensemble.members(path, len(classes), cfg)
    for _, m, s in members:
        if m.shape != mean.shape or not (np.allclose(m, mean, atol=1e-5) and np.allclose(s, std, atol=1e-5)):
            raise DistillError(f"--teacher {path}: trained on another transform output (its normalisation "
                               "differs); fix: use a teacher trained on the same --data-path")
    nets = [m for m, _, _ in members]
    for net in nets:
        net.trainable = False

    def soft(x):  # x is normalised already: the networks' own served outputs, averaged as an ensemble serves them
        out = export.mean_of([export.network_outputs(net, x) for net in nets])
        return tf.stop_gradient(out["scores"]), tf.stop_gradient(out["bird"])

    return soft
