"""`birdclef ensemble` (issue 16): several trained models served as one, the mean of their probabilities,
taken by evaluate, predict, compare and ONNX export like a training run."""
import json
import shutil

import numpy as np

from birdclef import audio, cli, predict


def test_an_ensemble_serves_the_mean_of_its_members_and_outlives_them(tiny_pair, shared_data, tmp_path, capsys):
    root, a, b, _ = tiny_pair
    b = str(shutil.copytree(b, tmp_path / "seed1"))  # deleted below
    out = str(tmp_path / "ens")
    assert cli.main(["ensemble", a, b, "--out", out]) == 0
    wave = audio.load(str(sorted((shared_data / "birdclef-mini" / "train_soundscapes").glob("*.ogg"))[0]))[:32000 * 9]
    outs = []
    for d in (a, b, out):
        serve, classes, _ = predict.load_model(d)
        outs.append({k: predict.as_numpy(v) for k, v in serve(waveform=wave).items()})
    m1, m2, ens = outs
    assert not np.allclose(m1["scores"], m2["scores"], atol=1e-3)  # two seeds: two models
    for k in ("scores", "bird"):
        np.testing.assert_allclose(ens[k], (m1[k] + m2[k]) / 2, atol=2e-6)
    np.testing.assert_array_equal(ens["chunk_start_s"], m1["chunk_start_s"])
    # embeddings side by side: unit length, and cosine similarity the mean of the members'
    e = ens["embedding"]
    assert e.shape[1] == m1["embedding"].shape[1] + m2["embedding"].shape[1]
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    cos = lambda x: x[0] @ x[-1]  # noqa: E731
    assert abs(cos(e) - (cos(m1["embedding"]) + cos(m2["embedding"])) / 2) < 1e-5

    # the same command again does nothing; other members into the same folder are refused, nothing lost
    assert cli.main(["ensemble", a, b, "--out", out]) == 0
    assert "nothing to do" in capsys.readouterr().out
    before = (tmp_path / "ens" / "run.json").read_text()
    assert cli.main(["ensemble", a, a + "/", "--out", out]) == 2  # one model given twice is one model
    assert cli.main(["ensemble", b, a, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "ens" / "run.json").read_text() == before

    # self-contained: the member runs can go, ONNX export still rebuilds every network from the copies
    shutil.rmtree(b)
    assert cli.main(["export", "--ckpt-dir", out]) == 0
    ox, ox_classes, _ = predict.load_model(out + "/model.onnx")
    got = ox(waveform=wave)
    assert ox_classes == classes
    assert np.abs(got["scores"] - ens["scores"]).max() <= 1e-3 and np.abs(got["bird"] - ens["bird"]).max() <= 1e-3


def test_evaluate_and_compare_take_an_ensemble(tiny_pair, tmp_path, capsys):
    root, _, _, ens = tiny_pair
    out = str(shutil.copytree(ens, tmp_path / "ens"))  # evaluate writes into it
    assert cli.main(["evaluate", out, "--work-dir", str(root / "w")]) == 0
    table = capsys.readouterr().out
    from birdclef.train import TrainConfig

    assert f"ensemble of 2 ({TrainConfig('d', 'c').model})" in table  # both members: train's default architecture
    ev = json.loads((tmp_path / "ens" / "evaluation.json").read_text())
    assert ev["classes"] == json.loads((tmp_path / "ens" / "run.json").read_text())["classes"]
    assert 0.0 <= ev["mAP"] <= 1.0


def test_ensemble_refuses_what_it_cannot_average(tiny_model, tmp_path, capsys):
    root, a = tiny_model
    assert cli.main(["ensemble", a, "--out", str(tmp_path / "one")]) == 2
    assert "two models or more" in capsys.readouterr().err
    assert cli.main(["ensemble", a, str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "not a finished `birdclef train` run" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(a, other)
    info = json.loads((other / "export" / "birdclef.json").read_text())
    info["classes"] = info["classes"][:-1] + ["zzz"]
    (other / "export" / "birdclef.json").write_text(json.dumps(info))
    assert cli.main(["ensemble", a, str(other), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "classes differ" in err and "zzz" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_a_member_without_best_weights_gives_only_its_last_checkpoint(tiny_pair, shared_data, tmp_path):
    root, a, b, _ = tiny_pair
    a = shutil.copytree(a, tmp_path / "seed0")  # two epochs: two checkpoints kept
    shutil.rmtree(a / "best", ignore_errors=True)  # a run without a validation split exports its last epoch
    ckpts = sorted(p.name for p in (a / "ckpt").glob("*.index"))
    assert len(ckpts) >= 2  # the run's own checkpoints
    out = tmp_path / "ens"
    assert cli.main(["ensemble", str(a), b, "--out", str(out)]) == 0
    copied = sorted(p.name for p in (out / "members" / "m0" / "ckpt").glob("*.index"))
    assert copied == [max(ckpts, key=lambda n: int(n.split("-")[1].split(".")[0]))]  # the latest only
    from birdclef import ensemble

    n = len(json.loads((out / "run.json").read_text())["classes"])
    mine = ensemble.trained_model(str(a), n).get_weights()  # what the run itself restores: its latest checkpoint
    copy = ensemble.trained_model(str(out / "members" / "m0"), n).get_weights()
    assert len(mine) == len(copy) and all(np.array_equal(x, y) for x, y in zip(mine, copy))
