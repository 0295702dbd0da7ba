"""Metrics and window logic of evaluate / predict (the model runs are in test_cli's demo tests)."""
import io

import numpy as np
import pandas as pd
import pytest

from birdclef import evaluate, predict
from birdclef.config import DEFAULT_FEATURES, NOCALL


def test_row_f1_follows_birdclef_2021():
    # per row F1 of label sets, nocall a label, then the mean over rows
    pred = ["amerob", "amerob bkcchi", NOCALL, NOCALL, "amerob"]
    true = ["amerob", "amerob", NOCALL, "bkcchi", NOCALL]
    expected = [1.0, 2 * 1 / (2 + 1), 1.0, 0.0, 0.0]
    assert evaluate.row_f1(pred, true) == pytest.approx(np.mean(expected))
    assert evaluate.row_f1([NOCALL] * 3, [NOCALL, "a", "a b"]) == pytest.approx(1 / 3)


def test_detection_precision_recall_and_map():
    p, r = evaluate.precision_recall(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (p, r) == (0.5, 0.5)
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert evaluate.mean_average_precision(perfect, y) == pytest.approx(1.0)
    assert evaluate.mean_average_precision(perfect[:, ::-1], y) < 0.75


def test_bird_top1_ignores_nocall_and_its_balanced_form_counts_each_species_once():
    classes = ["a", "b", "nocall"]
    y = np.array([0] * 8 + [1, 1, 2])  # a long recording of a, a short one of b, a non-bird chunk
    s = np.zeros((11, 3))
    s[:8, 0] = 0.6  # every a chunk right
    s[:8, 2] = 0.9  # though nocall scores higher: not a choice for bird chunks
    s[8, 1], s[9, 0] = 0.7, 0.7  # b: one right, one taken for a
    s[10, 0] = 0.9
    chunk, balanced = evaluate.bird_top1(s, y, classes)
    assert chunk == pytest.approx(9 / 10) and balanced == pytest.approx((1.0 + 0.5) / 2)


def test_windows_cover_the_recording_and_pad_only_the_last():
    sr = DEFAULT_FEATURES.sample_rate
    win = 5 * sr
    wave = np.arange(int(32.5 * sr), dtype=np.float32)
    blocks = [wave[i:i + 7 * sr] for i in range(0, len(wave), 7 * sr)]  # blocks not aligned to windows
    got = list(predict.windows_of(iter(blocks), per_call=2))
    assert [first for first, _ in got] == [0, 2, 4, 6]
    joined = np.concatenate([w for _, w in got])
    assert len(joined) == 7 * win  # 6.5 windows -> 7, the last zero-padded
    np.testing.assert_array_equal(joined[:len(wave)], wave)
    assert not joined[len(wave):].any()
    short = list(predict.windows_of(iter([np.ones(sr, np.float32)])))
    assert len(short) == 1 and len(short[0][1]) == win
    # a sliver past whole windows (10.00003 s) is not a window of its own; 1 s or more is
    for n, want in ((10 * sr + 1, 2), (11 * sr, 3), (24 * sr + 10, 5), (25 * sr + sr // 2, 5), (3 * sr, 1)):
        got = sum(len(w) for _, w in predict.windows_of(iter([np.ones(n, np.float32)]), per_call=2)) // win
        assert got == want == predict.n_windows(n), (n, got, want)


def test_window_scores_take_the_max_of_the_chunks_inside_each_window():
    sr = DEFAULT_FEATURES.sample_rate

    def serve(waveform):  # a fake model: chunk k (start k s) scores k on class 1
        n = int(waveform.shape[0]) // sr - 1
        scores = np.zeros((n, 2), np.float32)
        scores[:, 1] = np.arange(n)
        return {"scores": _T(scores), "chunk_start_s": _T(np.arange(n, dtype=np.float32))}

    res, bird = predict.window_scores(serve, np.zeros(10 * sr, np.float32))
    # window 0 holds chunks starting at 0..3, window 1 at 5..8; the chunk at 4 s spans both
    np.testing.assert_array_equal(res[:, 1], [3, 8])
    assert bird[0] == 1  # no `bird` output (older models): 1 - the last class (0 for chunk 0)


def test_a_window_keeps_its_last_chunk_when_float32_start_times_drift():
    sr = DEFAULT_FEATURES.sample_rate

    def serve(waveform):  # as the SavedModel returns them: k s in float32, plus the drift seen (4e-6 s)
        n = int(waveform.shape[0]) // sr - 1
        scores = np.zeros((n, 2), np.float32)
        scores[:, 1] = np.arange(n) % 5 == 3  # the last chunk inside each window scores 1
        starts = (np.arange(n) + 4e-6 * (np.arange(n) > 10)).astype(np.float32)
        return {"scores": _T(scores), "chunk_start_s": _T(starts)}

    res, _ = predict.window_scores(serve, np.zeros(60 * sr, np.float32))
    np.testing.assert_array_equal(res[:, 1], 1)  # every window, also past 10 s, still sees its chunk at +3 s


def test_chunks_made_mostly_of_padding_never_score_a_window():
    """A fake model that scores every chunk 0.9 for class 0 and bird presence, however much padding it
    holds (as a model that learned 'padding = short-clip class' would): only chunks at least half audio
    (or, in a window with none, the one with most audio) may set the window's scores."""
    sr = DEFAULT_FEATURES.sample_rate

    def serve(waveform):
        chunks, starts = predict_chunks(waveform)
        score = np.where(np.abs(chunks).max(1) > 0, 0.2, 0.9).astype(np.float32)  # padding-only chunk: 0.9
        return {"scores": _T(np.stack([score, 1 - score], 1)), "bird": _T(score),
                "chunk_start_s": _T(starts / sr)}

    def predict_chunks(waveform):
        from birdclef import features

        w = np.asarray(waveform)
        starts = np.array(features.chunk_starts(len(w)))
        return np.stack([w[s:s + 2 * sr] for s in starts]), starts

    wave = np.zeros(5 * sr, np.float32)
    wave[:int(1.2 * sr)] = 0.1  # a 1.2 s clip padded to one window
    res, bird = predict.window_scores(serve, wave, n_real=int(1.2 * sr))
    assert res[0, 0] == pytest.approx(0.2) and bird[0] == pytest.approx(0.2)  # not the padding chunks' 0.9
    # without the rule (all of it taken as audio) the padding decides
    assert predict.window_scores(serve, wave)[1][0] == pytest.approx(0.9)
    tiny = np.zeros(5 * sr, np.float32)
    tiny[:int(0.4 * sr)] = 0.1  # no chunk is half audio: the one with most audio counts
    assert predict.window_scores(serve, tiny, n_real=int(0.4 * sr))[1][0] == pytest.approx(0.2)
    np.testing.assert_allclose(predict.chunk_weights(np.array([0.0, 1.0, 3.0]), int(1.2 * sr)), [0.6, 0.1, 0.0])


class _T:
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


def test_labels_row_ids_and_raven_table():
    classes = ["aaa", "bbb", NOCALL]
    df = pd.DataFrame({"start_s": [0.0, 5.0, 10.0], "end_s": [5.0, 10.0, 15.0],
                       "aaa": [0.9, 0.1, 0.6], "bbb": [0.7, 0.2, 0.1], NOCALL: [0.0, 0.7, 0.3]})
    assert predict.label_windows(df, classes, 0.5) == ["aaa bbb", NOCALL, "aaa"]
    table = predict.raven_rows(predict.detections(df, classes, 0.5)).splitlines()
    assert table[0].startswith("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)")
    assert [l.split("\t")[7] for l in table[1:]] == ["aaa", "bbb", "aaa"]
    assert table[3].split("\t")[3:5] == ["10.000", "15.000"]
    det = predict.detections(df, classes, 0.5)
    assert det.to_dict("list") == {"start_s": [0.0, 0.0, 10.0], "end_s": [5.0, 5.0, 15.0],
                                   "species": ["aaa", "bbb", "aaa"], "score": [0.9, 0.7, 0.6]}
    assert predict.audacity_rows(predict.detections(df, classes, 0.5)).splitlines() == [
        "0.000\t5.000\taaa 0.900", "0.000\t5.000\tbbb 0.700", "10.000\t15.000\taaa 0.600"]
    assert predict.audacity_rows(predict.detections(df, classes, 0.95)) == "" and len(predict.detections(df, classes, 0.95)) == 0
    stems = predict.output_stems(["/a/x.ogg", "gs://b/x.wav", "/a/y.flac"])
    assert stems["/a/y.flac"] == "y" and len(set(stems.values())) == 3
    assert all(stems[p].startswith("x-") for p in ("/a/x.ogg", "gs://b/x.wav"))
    assert predict.row_prefix("gs://b/test_soundscapes/2782_SSW_20170701.ogg") == "2782_SSW"
    assert predict.row_prefix("/x/dawn chorus.flac") == "dawn chorus"


def test_predict_reads_and_writes_remote_storage(monkeypatch, shared_data):
    """Inputs and outputs on an fsspec store (memory:// here, gs:// or s3:// for users)."""
    import fsspec
    import tensorflow as tf

    from birdclef import features, fileio

    def serve(waveform):  # fake model: "aaa" where the chunk is loud
        chunks, starts = features.chunk_tf(waveform)
        loud = tf.cast(tf.sqrt(tf.reduce_mean(chunks ** 2, 1)) > 0.01, tf.float32)
        return {"scores": tf.stack([loud, 1 - loud], 1), "chunk_start_s": tf.cast(starts, tf.float32) / 32000}

    monkeypatch.setattr(predict, "load_model", lambda path: (serve, ["aaa", NOCALL], path))
    src = shared_data / "birdclef-mini" / "train_soundscapes" / "1001_PA_20200607.ogg"
    with fsspec.open("memory://in/sc/1001_PA_20200607.ogg", "wb") as f:
        f.write(src.read_bytes())
    fileio.write_text("memory://in/sc/notes.txt", "not audio, not picked up")
    summary = predict.run("memory://model", ["memory://in/sc"], "memory://out/p", log=lambda *a: None)
    assert summary["predicted"] == 1 and summary["quarantined"] == 0
    sub = pd.read_csv(io.StringIO(fileio.read_text("memory://out/p/submission.csv")))
    assert list(sub.row_id) == ["1001_PA_5", "1001_PA_10"]
    assert fileio.exists("memory://out/p/raven/1001_PA_20200607.selections.txt")


def test_metrics_json_is_strict_and_undefined_metrics_are_null(tmp_path):
    """evaluation.json and train's metrics.json are read by tools outside Python: no bare NaN."""
    import json

    from birdclef import compare, fileio

    nan = float("nan")
    p, q = evaluate.precision_recall(np.array([False, False]), np.array([False, True]))
    assert np.isnan(p) and q == 0.0  # nothing detected: precision undefined
    fileio.write_json(str(tmp_path / "metrics.json"), {"model": "m", "test": {"knn_top1": 0.5,
                                                       "knn_top1_birds": nan}, "sweep": [{"p": p}]})
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert loaded["test"]["knn_top1_birds"] is None and loaded["sweep"] == [{"p": None}]
    table, problems = compare.rows([str(tmp_path)])
    assert not problems and "| n/a |" in compare.markdown(table)


def test_threshold_is_chosen_by_chunk_row_f1_with_ties_going_to_the_default():
    classes = ["a", "b", NOCALL]
    # chunk truths: a, b, nocall; bird scores that only a threshold in (0.3, 0.6] labels exactly right
    scores = np.array([[0.65, 0.1, 0.2], [0.2, 0.7, 0.1], [0.3, 0.25, 0.9]], np.float32)
    y = np.array([0, 1, 2])
    sweep = evaluate.chunk_sweep(scores, y, classes)
    assert [x["threshold"] for x in sweep] == list(evaluate.SWEEP)
    f1 = {x["threshold"]: x["row_f1"] for x in sweep}
    assert f1[0.4] == f1[0.5] == f1[0.6] == 1.0 and f1[0.3] < 1.0 and f1[0.7] < 1.0
    assert evaluate.choose_threshold(sweep)["threshold"] == 0.5  # the tie goes to the default
    assert evaluate.choose_threshold([{"threshold": 0.2, "row_f1": 0.9}, {"threshold": 0.5, "row_f1": 0.8},
                                      {"threshold": 0.7, "row_f1": float("nan")}])["threshold"] == 0.2
    assert evaluate.choose_threshold([{"threshold": 0.5, "row_f1": float("nan")}]) == {}


def test_a_low_class_threshold_does_not_lower_the_bird_presence_gate():
    classes = ["a", "b", NOCALL]
    # window 1: a bird is present, its species scores low; window 2: no bird present, a class scores high
    df = pd.DataFrame({"a": [0.2, 0.9], "b": [0.05, 0.05], NOCALL: [0.1, 0.1], predict.BIRD: [0.8, 0.3]})
    assert predict.label_windows(df, classes, 0.1) == ["a", NOCALL]
    assert predict.label_windows(df, classes, 0.1, presence=0.2) == ["a", "a"]
    assert predict.label_windows(df, classes, 0.5) == [NOCALL, NOCALL]
    det = predict.detections(df.assign(start_s=[0, 5], end_s=[5, 10]), classes, 0.1)
    assert list(det.species) == ["a"] and list(det.start_s) == [0]


def test_predict_threshold_val_reads_evaluate_choice_or_says_what_to_run(tmp_path):
    import json

    export = tmp_path / "ckpt" / "export"
    export.mkdir(parents=True)
    with pytest.raises(predict.PredictError, match="birdclef evaluate"):
        predict.val_threshold(str(export), str(export))
    (tmp_path / "ckpt" / "evaluation.json").write_text(json.dumps({"val_threshold": {"source": "none: no val"}}))
    with pytest.raises(predict.PredictError, match="none: no val"):
        predict.val_threshold(str(tmp_path / "ckpt"), str(export))
    (tmp_path / "ckpt" / "evaluation.json").write_text(json.dumps({"val_threshold": {"threshold": 0.3}}))
    assert predict.val_threshold(str(tmp_path / "ckpt"), str(export)) == 0.3  # given the ckpt dir
    assert predict.val_threshold(str(export), str(export)) == 0.3              # given its export/ folder
    assert predict.val_choice(str(export), str(export)) == (0.3, 0.5)  # no gate recorded: the default
    (tmp_path / "ckpt" / "evaluation.json").write_text(json.dumps({"val_threshold": {"threshold": 0.2,
                                                                                       "presence_threshold": 0.8}}))
    assert predict.val_choice(str(tmp_path / "ckpt"), str(export)) == (0.2, 0.8)


def test_the_presence_gate_is_raised_until_val_non_bird_clips_are_quiet(monkeypatch):
    """Of 20 val non-bird clips, peaks of presence 0.3 (x17), 0.65, 0.75, 0.97: at 0.5 three clips (15 %)
    would be heard as birds, at 0.7 two (10 %), at 0.8 one (5 %, the target): the gate is 0.8."""
    peaks = iter([0.3] * 17 + [0.65, 0.75, 0.97])
    monkeypatch.setattr(predict, "predict_file", lambda *a, **k: pd.DataFrame({predict.BIRD: [next(peaks), 0.1]}))
    rec = pd.DataFrame({"split": ["val"] * 20 + ["test"], "label": [NOCALL] * 21, "path": ["x"] * 21})
    gate = evaluate.presence_gate_on_val(None, ["a", NOCALL], rec)
    assert gate["presence_threshold"] == 0.8 and gate["val_nonbird_heard"] == pytest.approx(0.05)
    assert evaluate.presence_gate_on_val(None, ["a", NOCALL], rec[rec.split == "test"])["presence_threshold"] == 0.5


def test_per_class_metrics_name_the_weak_species_and_what_they_are_taken_for():
    from birdclef.compare import _weakest
    from birdclef.evaluate import per_class

    classes = ["aaa", "bbb", "ccc", "nocall", "ddd"]
    # aaa: 4 chunks, all right; bbb: 4 chunks, 3 taken for ccc; ccc: 2 chunks, right; ddd: never seen nor said
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3])
    top = np.array([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 3])
    scores = np.full((len(y), len(classes)), 0.01)
    scores[np.arange(len(y)), top] = 0.9
    scores[5:8, 1] = 0.5  # bbb's mistaken chunks still score bbb second
    rows = per_class(scores, y, classes)
    by = {r["class"]: r for r in rows}
    assert set(by) == {"aaa", "bbb", "ccc", "nocall"}
    # weakest AP first: ccc's score ranks bbb's 3 chunks level with its own 2 (AP 0.4), while
    # bbb's own score still ranks its chunks first (AP 1.0, though only 1 of 4 is top-1)
    assert rows[0]["class"] == "ccc" and abs(by["ccc"]["AP"] - 0.4) < 1e-9
    assert by["bbb"]["support"] == 4 and by["bbb"]["recall"] == 0.25 and by["bbb"]["precision"] == 1.0
    assert by["bbb"]["most_confused_with"] == "ccc" and by["bbb"]["confused_chunks"] == 3
    assert by["ccc"]["precision"] == 0.4 and by["ccc"]["recall"] == 1.0
    assert abs(by["ccc"]["f1"] - 2 * 0.4 / 1.4) < 1e-9
    assert by["aaa"]["AP"] == 1.0 and by["aaa"]["most_confused_with"] is None
    assert by["bbb"]["AP"] == 1.0
    assert _weakest(rows) == "ccc 0.400" and _weakest([]) == ""


def test_report_shows_the_evaluation_numbers_and_plots_them(tmp_path):
    from birdclef import fileio, report
    from birdclef.evaluate import SWEEP, confusion, per_class

    classes = ["aaa", "bbb", NOCALL]
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 0, 1, 0, 2, 2]] * 0.8 + 0.05
    scores[3] = [0.6, 0.02, 0.38]  # a bbb chunk taken for aaa, scoring bbb lowest of all: bbb's AP is the weakest
    ev = {"ckpt_dir": "ck", "export": "ck/export", "threshold": 0.5, "test_chunks": 6, "accuracy": 5 / 6,
          "mAP": 0.9, "soundscape_split": "test", "soundscape_windows": 12, "row_f1": 0.75, "row_f1_all_nocall": 0.25,
          "per_class": per_class(scores, y, classes), "confusion": confusion(y, scores.argmax(1), classes),
          "threshold_sweep": [{"threshold": t, "row_f1": 0.5 + t / 2, "detection_precision": None,
                               "detection_recall": 1 - t} for t in SWEEP],
          "val_threshold": {"threshold": 0.4, "source": "val recording chunks", "n": 9},
          "at_val_threshold": {"row_f1": 0.7}, "skipped": ["x.ogg: truncated"],
          "chunk_presence": {"auc": 0.93, "precision": 0.9, "recall": 0.8, "f1": 0.847, "n": 40, "positives": 30},
          "window_presence": {"auc": None, "precision": 1.0, "recall": 0.5, "f1": 0.667, "n": 4, "positives": 4},
          "nonbird_test": {"clips": 10, "presence_threshold": 0.8, "called_bird": {
              "0.5": {"share": 0.1, "n": 1, "examples": ["dog.ogg -> crow"]}, "0.4": {"share": 0.0, "n": 0}}}}
    assert ev["confusion"] == {"classes": classes, "counts": [[2, 0, 0], [1, 1, 0], [0, 0, 2]]}
    md = open(report.write(ev, str(tmp_path / "report"))).read()
    for png in ("threshold_sweep.png", "per_class_ap.png", "confusion.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"]({png})" in md
    assert "| accuracy | 0.833 |" in md and "| row-wise F1, always nocall | 0.250 |" in md
    assert "| bbb | 2 | " in md and "| aaa |" in md and md.index("| bbb | 2 |") < md.index("| aaa | 2 |")
    assert "**0.4**" in md and "0.700" in md and "x.ogg: truncated" in md
    assert "| test chunks (bird recordings against non-bird clips) | 40 | 30 | 0.930 |" in md
    assert "| test soundscape windows | 4 | 4 | n/a | 1.000 | 0.500 | 0.667 |" in md
    assert "- class threshold 0.5: 1 (10.0 %): dog.ogg -> crow" in md and "- class threshold 0.4: 0 (0.0 %)" in md
    report.write({"ckpt_dir": "ck", "accuracy": 1.0}, "memory://report-test")  # remote, and no plots to make
    assert "| accuracy | 1.000 |" in fileio.read_text("memory://report-test/report.md")


def test_confusion_cells_show_counts_and_the_sweep_legend_stays_off_the_curves(tmp_path, monkeypatch):
    from birdclef import report

    figs = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figs.append(fig))
    report._plot_confusion({"classes": ["a", "b"], "counts": [[7, 3], [0, 12]]}, str(tmp_path / "c.png"))
    texts = sorted(t.get_text() for t in figs[0].axes[0].texts)
    assert texts == ["12", "3", "7"]  # every non-empty cell, as a count
    ev = {"threshold_sweep": [{"threshold": t, "row_f1": 0.5, "detection_precision": 0.6, "detection_recall": 0.4}
                              for t in (0.1, 0.5, 0.9)], "row_f1_all_nocall": 0.3}
    report._plot_sweep(ev, str(tmp_path / "s.png"))
    ax = figs[1].axes[0]
    figs[1].canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not over the always-nocall line
