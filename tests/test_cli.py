import json
import shutil
import subprocess
import sys

from birdclef import cli, evaluate


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "birdclef.cli", *args], capture_output=True, text=True)


def test_help_lists_only_working_commands():
    out = run_cli("--help").stdout
    for cmd in ("demo", "synth", "validate", "preprocess", "transform", "train", "evaluate", "predict", "compare"):
        assert cmd in out


def test_validate_bad_input_one_line_per_problem_no_traceback(tmp_path, shared_data):
    root = tmp_path / "ds"
    (root / "train_short_audio" / "barowl").mkdir(parents=True)
    good = shared_data / "birdclef-mini" / "train_short_audio" / "barowl" / "MBarnowl_1.ogg"
    shutil.copy(good, root / "train_short_audio" / "barowl" / "good.ogg")
    for name in ("truncated.ogg", "empty.ogg", "not_audio.ogg"):
        shutil.copy(shared_data / "corrupt" / name, root / "train_short_audio" / "barowl" / name)
    rows = ["primary_label,secondary_labels,filename",
            "barowl,[],good.ogg", "barowl,[],truncated.ogg", "barowl,[],empty.ogg",
            "barowl,[],not_audio.ogg", "barowl,[],missing.ogg"]
    (root / "train_metadata.csv").write_text("\n".join(rows) + "\n")
    report = tmp_path / "report.json"
    r = run_cli("validate", "--data-dir", str(root), "--report", str(report))
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert sum("truncated.ogg: truncated" in l for l in lines) == 1
    assert sum("empty.ogg: empty" in l for l in lines) == 1
    assert sum("not_audio.ogg: not_audio" in l for l in lines) == 1
    assert sum("missing.ogg" in l for l in lines) == 1
    assert "validate: 1 of 4 audio files usable (recordings 1/4), 4 problem(s)" in lines[-2]
    assert r.returncode == 0
    assert len(json.loads(report.read_text())["quarantined"]) == 3
    assert run_cli("validate", "--data-dir", str(root), "--strict").returncode == 2

    # nothing usable: non-zero exit
    (root / "train_metadata.csv").write_text("\n".join(rows[:1] + rows[2:]) + "\n")
    r = run_cli("validate", "--data-dir", str(root))
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_missing_dataset_and_bad_columns_are_one_line_errors(tmp_path):
    r = run_cli("validate", "--data-dir", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "train_metadata.csv" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "train_metadata.csv").write_text("a,b\n1,2\n")
    r = run_cli("validate", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "missing column(s) primary_label, secondary_labels, filename" in r.stderr


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys, shared_data):
    work = tmp_path / "demo"
    args = ["demo", "--work-dir", str(work), "--epochs", "1", "--species", "3", "--recordings-per-species", "3",
            "--soundscapes", "1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "birdclef demo finished" in out and str(work / "data" / "train_metadata.csv") in out
    for made in ("preprocess/train_metadata_pos_neg.csv", "transform/manifest.json", "model/metrics.json",
                 "model/export/saved_model.pb", "model/evaluation.json", "predictions/submission.csv"):
        assert (work / made).exists(), made
    assert "test split k-NN top-1" in out and "row-wise F1" in out
    _check_predict(work, tmp_path / "pred", shared_data, capsys)
    # same parameters: kept, not remade
    mtime = (work / "data" / "train_metadata.csv").stat().st_mtime_ns
    assert cli.main(args) == 0
    assert (work / "data" / "train_metadata.csv").stat().st_mtime_ns == mtime
    assert "already holds this dataset" in capsys.readouterr().out
    # other parameters: refused, nothing overwritten
    assert cli.main(args[:-2] + ["--soundscapes", "2"]) == 2
    assert "other parameters" in capsys.readouterr().err
    assert (work / "data" / "train_metadata.csv").stat().st_mtime_ns == mtime


def _check_predict(work, out, shared_data, capsys):
    """predict: every input accounted for, BirdCLEF rows, resume, and no silent overwrite."""
    import pandas as pd

    from birdclef import audio, predict

    soundscapes = sorted((work / "data" / "test_soundscapes").iterdir())
    corrupt = shared_data / "corrupt"
    inputs = [str(work / "data" / "test_soundscapes"), str(corrupt / "truncated.ogg"), str(corrupt / "empty.ogg"),
              str(corrupt / "stereo_48k.wav")]
    args = ["predict", *inputs, "--ckpt-dir", str(work / "model"), "--out", str(out)]
    assert cli.main(args) == 0
    q = pd.read_csv(out / "quarantine.csv")
    assert sorted(q.reason) == ["empty", "truncated"] and q.message.str.contains("fix").all()
    scores = pd.read_csv(out / "scores.csv")
    good = [*map(str, soundscapes), str(corrupt / "stereo_48k.wav")]
    assert sorted(set(scores.file)) == sorted(good)
    for f in good:
        assert (scores.file == f).sum() == predict.n_windows(round(audio.duration(f) * 32000)), f
    sub = pd.read_csv(out / "submission.csv", keep_default_na=False)
    assert list(sub.columns) == ["row_id", "birds"] and len(sub) == len(scores)
    stem = soundscapes[0].stem.split("_")
    assert f"{stem[0]}_{stem[1]}_5" in set(sub.row_id)  # BirdCLEF row ids: audio_id_site_end
    assert (sub.birds != "").all()
    assert len(list((out / "raven").iterdir())) == len(good) == len(list((out / "audacity").iterdir()))
    det = pd.read_csv(out / "detections.csv")
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert len(det) == sum(len(b.split()) for b in scores["birds"] if b != "nocall")
    capsys.readouterr()
    before = (out / "submission.csv").read_text()
    assert cli.main(args) == 0
    assert f"({len(good)} from an earlier run)" in capsys.readouterr().out
    assert (out / "submission.csv").read_text() == before
    assert cli.main(args + ["--threshold", "0.9"]) == 2
    assert "another threshold" in capsys.readouterr().err
    assert (out / "submission.csv").read_text() == before
    # --threshold val: the threshold evaluate chose on the val split, read from evaluation.json
    val_choice = json.loads((work / "model" / "evaluation.json").read_text())["val_threshold"]
    chosen, gate = val_choice["threshold"], val_choice["presence_threshold"]
    val_out = out.parent / (out.name + "-val")
    assert cli.main(["predict", inputs[0], "--ckpt-dir", str(work / "model"), "--out", str(val_out),
                     "--threshold", "val"]) == 0
    assert f"class threshold {chosen} and bird-presence gate {gate}, chosen on validation data" in capsys.readouterr().out
    val_scores = pd.read_csv(val_out / "scores.csv", keep_default_na=False)
    assert list(val_scores.birds) == predict.label_windows(val_scores, predict.load_model(str(work / "model"))[1],
                                                           chosen, gate)
    params = json.loads((val_out / "predict.json").read_text())["params"]
    assert params["threshold"] == chosen and params["presence_threshold"] == gate
    # a file reached twice (its folder and itself) is read once; a namesake elsewhere gets its own row ids
    import shutil

    twin = out.parent / "twin"
    twin.mkdir()
    shutil.copy(soundscapes[0], twin / soundscapes[0].name)
    dup_out = out.parent / (out.name + "-dup")
    assert cli.main(["predict", inputs[0], str(soundscapes[0]), str(twin), "--ckpt-dir", str(work / "model"),
                     "--out", str(dup_out)]) == 0
    assert "1 input(s) reached twice read once" in capsys.readouterr().out
    sub = pd.read_csv(dup_out / "submission.csv", keep_default_na=False)
    windows = [predict.n_windows(round(audio.duration(str(f)) * 32000)) for f in [*soundscapes, soundscapes[0]]]
    assert sub.row_id.is_unique and len(sub) == sum(windows)


def test_synth_refuses_foreign_dataset(tmp_path, capsys):
    (tmp_path / "train_metadata.csv").write_text("primary_label,secondary_labels,filename\n")
    assert cli.main(["synth", "--out", str(tmp_path)]) == 2
    assert "choose an empty --out folder" in capsys.readouterr().err


def test_demo_defaults_reach_09_heldout_accuracy(tmp_path, capsys):
    """The demo's own promise: a dilated CNN trained by `birdclef demo` with its default settings
    classifies held-out (test split) chunks of the synthetic data well above chance (1/7) and tells birds
    from non-bird audio."""
    assert cli.main(["demo", "--work-dir", str(tmp_path / "demo")]) == 0
    test = json.loads((tmp_path / "demo" / "model" / "metrics.json").read_text())["test"]
    assert test["classes_present"] == 7 and test["chunks"] > 40
    # the class head scores windows in predict and evaluate; the embedding's k-NN is the second opinion
    # with augmentation the 15-epoch demo varies run to run (classifier top-1 0.76-1.0, k-NN 0.80-0.87 seen)
    assert test["classifier_top1"] >= 0.6 and test["knn_top1"] >= 0.6, test
    assert test["bird_auc"] >= 0.9, test  # bird presence: bird chunks against non-bird ones
    ev = json.loads((tmp_path / "demo" / "model" / "evaluation.json").read_text())
    # through the exported model, on raw audio of held-out recordings and soundscape windows
    assert ev["accuracy"] >= 0.6 and ev["mAP"] >= 0.6, ev
    assert ev["soundscape_windows"] >= 6 and ev["row_f1"] > ev["row_f1_all_nocall"], ev
    assert ev["birds_not_in_classes"] == []
    # faint calls and non-bird events in the synthetic soundscapes: the threshold matters (issue 17: the
    # sweep was flat and every metric 1.000, so the demo taught nothing about reading a report)
    assert len({round(x["row_f1"], 6) for x in ev["threshold_sweep"]}) > 1, ev["threshold_sweep"]
    at_default = next(x for x in ev["threshold_sweep"] if x["threshold"] == 0.5)
    assert at_default["row_f1"] == ev["row_f1"] and at_default["detection_recall"] == ev["detection_recall"]
    # `predict --threshold val`: chosen on the val split (never test), reported at test beside the default
    vt = ev["val_threshold"]
    assert vt["threshold"] in evaluate.SWEEP and vt["source"].startswith("val") and vt["n"] > 0, vt
    assert ev["at_val_threshold"] == next(x for x in ev["threshold_sweep"] if x["threshold"] == vt["threshold"])
    # per class: every class of the test chunks, and the counts of the confusion matrix add up to them
    assert sum(c["support"] for c in ev["per_class"]) == ev["test_chunks"] == sum(map(sum, ev["confusion"]["counts"]))
    _short_call_scores_do_not_depend_on_its_place_in_the_window(tmp_path / "demo")
    _quiet_empty_audio_is_not_a_bird(tmp_path / "demo")
    report = (tmp_path / "demo" / "model" / "report" / "report.md").read_text()
    assert f"| mAP | {ev['mAP']:.3f} |" in report and "![confusion matrix](confusion.png)" in report


def test_compare_tables_models_and_names_missing_runs(tmp_path, capsys):
    for name, knn in (("a", 0.8), ("b", 0.55)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "model": name, "loss": "classify", "params": 10, "epochs_trained": 3,
            "test": {"knn_top1": knn, "chunks": 12, "chance_uniform": 0.25}}))
    csv = tmp_path / "t.csv"
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "--csv", str(csv)]) == 0
    out, err = capsys.readouterr()
    lines = [l for l in out.splitlines() if l.startswith("| ")]
    assert len(lines) == 3 and "| a | classify | 10 | 3 | 0.800 |" in lines[1] and "0.550" in lines[2]
    assert "c: no metrics.json" in err
    assert csv.read_text().count("\n") == 3
    assert cli.main(["compare", str(tmp_path / "c")]) == 1
    from birdclef import compare, report

    png = tmp_path / "models.png"
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and f"plot written to {png}" in capsys.readouterr().out
    # only metrics some model has: these runs were never evaluated, so no mAP or row F1
    assert report.plot_models(compare.rows([str(tmp_path / "a")])[0], str(png)) == ["k-NN top-1"]


def _quiet_empty_audio_is_not_a_bird(work):
    """Digital silence and faint hiss (-60 dBFS RMS, a quiet recorder at night) stay below the bird-presence
    gate (`train --augment quiet`, on by default). Measured on demo models: presence 0.001 and 0.06 with it;
    0.003-0.54 and 0.97-0.998 without it (three models)."""
    import numpy as np

    from birdclef import predict
    from birdclef.augment import coloured_noise
    from birdclef.config import PRESENCE_THRESHOLD

    serve, _, _ = predict.load_model(str(work / "model"))
    rng = np.random.default_rng(7)
    for name, wave in (("silence", np.zeros(5 * 32000, np.float32)),
                       ("white hiss at -60 dBFS", coloured_noise(5 * 32000, "white", rng) * 1e-3)):
        assert predict.window_scores(serve, wave)[1][0] < PRESENCE_THRESHOLD, name


def _short_call_scores_do_not_depend_on_its_place_in_the_window(work, tolerance=0.12, class_tolerance=0.3):
    """A 0.8 s call (the loudest of a held-out recording) alone in a 5 s window of digital silence, at
    three offsets, for the first six held-out bird recordings: the median over calls of the spread of the
    window's bird presence stays within `tolerance`, and of the best class score's spread within
    `class_tolerance` (training rolls chunks in time, `--augment shift`, and places short clips anywhere in
    their chunk; serving takes the max over chunks that are mostly audio).
    Measured at these three offsets on demo models (six calls each), the median presence spread: trained
    without `shift`, 0.07, 0.20, 0.25 (the per-call check before failed 3 demo runs of 4); with `shift`
    0.00, 0.01; with the default `shift,quiet` 0.01, 0.06. One call's spread alone is not steady enough
    to test: one `shift` model had 0.40 on one call and <= 0.08 on the other five."""
    import numpy as np
    import pandas as pd

    from birdclef import audio, predict

    serve, classes, _ = predict.load_model(str(work / "model"))
    rec = pd.read_csv(work / "preprocess" / "recordings.csv")
    spreads, presence_spreads = [], []
    for path in rec[(rec.split == "test") & (rec.label != "nocall")].path.iloc[:6]:
        wave = audio.load(path)
        sr, n = 32000, int(0.8 * 32000)
        energy = np.convolve(wave ** 2, np.ones(n), "valid")[::160]
        start = int(np.argmax(energy)) * 160
        call = wave[start:start + n]
        presence, best = [], []
        for offset_s in (0.2, 1.6, 3.4):
            window = np.zeros(5 * sr, np.float32)
            window[int(offset_s * sr):int(offset_s * sr) + n] = call
            scores, bird = predict.window_scores(serve, window)
            presence.append(bird[0])
            best.append(scores[0, :-1].max())
        presence_spreads.append(max(presence) - min(presence))
        spreads.append(max(best) - min(best))
    assert len(spreads) >= 3 and np.median(presence_spreads) <= tolerance, presence_spreads
    assert np.median(spreads) <= class_tolerance, spreads
