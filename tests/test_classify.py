"""birdclef classify: a linear classifier on labelled embeddings that predict and evaluate accept (issue 15)."""
import json
import sqlite3

import pandas as pd

from birdclef import cli, review


def test_classify_labelled_windows_then_predict_and_evaluate_with_it(tiny_model, tmp_path, capsys):
    root, ckpt = tiny_model
    audio = root / "data" / "train_short_audio"
    species = sorted(p.name for p in audio.iterdir())[:2]
    db = str(tmp_path / "emb.sqlite")
    files = [str(f) for s in species for f in sorted((audio / s).glob("*"))]
    nonbird = sorted(str(f) for f in (root / "data" / "nonbird").rglob("*.ogg"))[:3]
    assert cli.main(["embed", *files, *nonbird, "--ckpt-dir", ckpt, "--db", db]) == 0
    out = str(tmp_path / "c2")
    # nothing labelled yet: refused in one line
    assert cli.main(["classify", "--db", db, "--out", out]) == 2
    assert "no labels" in capsys.readouterr().err
    # label every window as review would: its species, `not` for non-bird clips, one `unsure`
    store = review.Store(db)
    for i in range(store.total()):
        path = store.item(i)["file"]
        label = next((s for s in species if f"/{s}/" in path), "not")
        store.set_label(i, "unsure" if i == 0 else label)
    assert cli.main(["classify", "--db", db, "--out", out]) == 0
    spec = json.load(open(f"{out}/classifier.json"))
    assert spec["classes"] == species and spec["labelled"]["not"] >= 3
    assert spec["heldout"]["folds"] >= 2 and 0 <= spec["heldout"]["accuracy"] <= 1
    assert set(spec["heldout"]["per_label"]) == set(species)
    # a second run does not overwrite it silently
    assert cli.main(["classify", "--db", db, "--out", out]) == 2
    assert "--replace" in capsys.readouterr().err
    # predict scores with the classifier's labels; the base model's bird presence stays
    pred = tmp_path / "pred"
    assert cli.main(["predict", files[0], "--ckpt-dir", out, "--out", str(pred)]) == 0
    scores = pd.read_csv(pred / "scores.csv")
    assert [c for c in scores.columns if c in species] == species and "bird" in scores.columns
    # the scores are the classifier's sigmoid on the base model's chunk embeddings (window max over the
    # chunks that speak for the window), and the bird column is the base model's
    import numpy as np

    from birdclef import audio as audio_mod, predict

    base, _, _ = predict.load_model(ckpt)
    wave = audio_mod.load(files[0])
    n = len(wave)
    wave = np.pad(wave, (0, predict.n_windows(n) * 5 * 32000 - n))  # predict pads to whole windows
    o = base(waveform=wave)
    _, w, use, _ = predict.speaking_chunks(o, len(wave), n)
    logits = predict.as_numpy(o["embedding"]) @ np.asarray(spec["weights"]).T + np.asarray(spec["bias"])
    expect = (1 / (1 + np.exp(-logits)))[use & (w == 0)].max(0)
    np.testing.assert_allclose(scores.loc[0, species].to_numpy(float), expect, atol=2e-5)
    bird_base = predict.as_numpy(o["bird"]) if "bird" in o else None
    if bird_base is not None:
        assert abs(scores.loc[0, "bird"] - predict.chunk_presence(o, predict.as_numpy(o["scores"]))[use & (w == 0)].max()) < 2e-5
    assert cli.main(["evaluate", out, "--work-dir", str(root / "w")]) == 0
    ev = json.load(open(f"{out}/evaluation.json"))
    assert ev["classes"] == species and ev["test_chunks"] > 0


def test_labels_of_unsure_windows_are_left_out_and_the_newest_label_counts(tmp_path):
    import numpy as np

    from birdclef import classify, embeddings

    db = str(tmp_path / "e.sqlite")
    con = embeddings.connect(db)
    con.execute("INSERT INTO recording (path, duration_s, windows, done) VALUES ('/a.wav', 15, 3, 1)")
    for w in range(3):
        con.execute("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (1, 'window', ?, ?, ?)",
                    (5.0 * w, 5.0 * w + 5, np.full(4, w, np.float32).tobytes()))
    con.executescript(review.LABEL_SCHEMA)
    for start, label in ((0, "abc"), (0, "not"), (5, "unsure"), (10, "xyz")):
        con.execute("INSERT INTO label (path, start_s, end_s, label, given_at) VALUES ('/a.wav', ?, ?, ?, 't')",
                    (start, start + 5, label))
    con.commit()
    df, x = classify.labelled_windows(db)
    assert list(zip(df.start_s, df.label)) == [(0.0, "not"), (10.0, "xyz")]
    assert x[:, 0].tolist() == [0.0, 2.0]
    con.close()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM label").fetchone()[0] == 4
