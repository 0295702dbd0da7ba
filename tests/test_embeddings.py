"""Embedding database and search by example (issue 15)."""
import shutil
import sqlite3

import numpy as np
import pandas as pd

from birdclef import audio, cli, embeddings, predict


def test_embed_stores_every_window_resumes_and_refuses_a_second_model(tiny_model, shared_data, tmp_path, capsys):
    root, ckpt = tiny_model
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    soundscapes = sorted((shared_data / "birdclef-mini" / "train_soundscapes").glob("*.ogg"))[:2]
    for s in soundscapes:
        shutil.copy(s, audio_dir / s.name)
    shutil.copy(shared_data / "corrupt" / "truncated.ogg", audio_dir / "truncated.ogg")
    db = str(tmp_path / "emb.sqlite")
    assert cli.main(["embed", str(audio_dir), "--ckpt-dir", ckpt, "--db", db]) == 0
    assert "truncated" in capsys.readouterr().err  # named, and the rest goes on
    con = sqlite3.connect(db)
    for s in soundscapes:
        n = predict.n_windows(round(audio.duration(str(s)) * 32000))
        got = con.execute("SELECT COUNT(*) FROM embedding e JOIN recording r ON r.id = e.recording_id "
                          "WHERE r.path = ? AND kind = 'window'", (str(audio_dir / s.name),)).fetchone()[0]
        assert got == n, s
    vec = np.frombuffer(con.execute("SELECT vector FROM embedding LIMIT 1").fetchone()[0], np.float32)
    assert abs(np.linalg.norm(vec) - 1) < 1e-4
    rows = con.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]
    con.close()
    # a rerun adds nothing (every file is done)
    assert cli.main(["embed", str(audio_dir), "--ckpt-dir", ckpt, "--db", db]) == 0
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM embedding").fetchone()[0] == rows
    # another model: refused, nothing written
    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    _perturb_export(other)
    assert cli.main(["embed", str(audio_dir), "--ckpt-dir", str(other), "--db", db]) == 2
    assert "another model" in capsys.readouterr().err
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM embedding").fetchone()[0] == rows


def _perturb_export(ckpt):
    """Re-export the run with its weights changed: a different model to the fingerprint."""
    import json

    import tensorflow as tf

    from birdclef import export, features, models

    run = json.loads((ckpt / "run.json").read_text())["config"]
    classes = json.loads((ckpt / "classes.json").read_text())
    m = models.build(run["model"], features.mel_shape(), run["embedding_dim"], len(classes))
    m.load_weights(str(ckpt / "best" / "weights"))
    for w in m.trainable_weights[:2]:
        w.assign(w + tf.random.normal(w.shape, stddev=0.5, seed=1))
    shutil.rmtree(ckpt / "export")
    export.export(m, classes, run["data_path"] + "/transform/tft", str(ckpt / "export"))


def test_search_finds_the_query_window_itself_first(tiny_model, shared_data, tmp_path):
    root, ckpt = tiny_model
    s = max((shared_data / "birdclef-mini" / "train_soundscapes").glob("*.ogg"), key=lambda p: audio.duration(str(p)))
    db = str(tmp_path / "emb.sqlite")
    embeddings.embed(ckpt, [str(s)], db, log=lambda x: None)
    res = embeddings.search(db, f"{s}@10-15", k=5, out=str(tmp_path / "out"), log=lambda x: None)
    assert list(res["rank"]) == [1, 2, 3, 4, 5] and res.similarity.is_monotonic_decreasing
    assert res.iloc[0].start_s == 10 and res.iloc[0].end_s == 15 and res.iloc[0].similarity > 0.999
    table = pd.read_csv(tmp_path / "out" / "search.selections.txt", sep="\t")
    assert len(table) == 5 and table["Begin Time (s)"].iloc[0] == 10


def test_search_refuses_bad_queries_in_one_line(tmp_path, capsys):
    assert cli.main(["search", "--db", str(tmp_path / "none.sqlite"), "--query", "x.wav"]) == 2
    assert "birdclef embed" in capsys.readouterr().err
    for q in ("x.wav@5", "x.wav@9-3"):
        try:
            embeddings.parse_query(q)
            raise AssertionError(q)
        except embeddings.EmbedError as e:
            assert "START-END" in str(e)
