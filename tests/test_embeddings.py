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
    # the approximate index finds the same first window
    approx = embeddings.search(db, f"{s}@10-15", k=5, index="approx", log=lambda x: None)
    assert approx.iloc[0].start_s == 10 and abs(approx.iloc[0].similarity - res.iloc[0].similarity) < 1e-3


def test_search_refuses_bad_queries_in_one_line(tmp_path, capsys):
    assert cli.main(["search", "--db", str(tmp_path / "none.sqlite"), "--query", "x.wav"]) == 2
    assert "birdclef embed" in capsys.readouterr().err
    for q in ("x.wav@5", "x.wav@9-3"):
        try:
            embeddings.parse_query(q)
            raise AssertionError(q)
        except embeddings.EmbedError as e:
            assert "START-END" in str(e)


def _vector_db(path, n, dim=32, seed=0):
    """An embedding table of n clustered unit vectors (no model: the index only reads vectors)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    con = embeddings.connect(path)
    con.execute("INSERT INTO recording (path, duration_s, windows, done) VALUES ('/a.wav', 1, 1, 1)")
    con.executemany("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (1, 'window', ?, ?, ?)",
                    [(5.0 * i, 5.0 * i + 5, v.tobytes()) for i, v in enumerate(x)])
    con.commit()
    return con, x


def test_approximate_index_recall_against_exact_and_it_follows_the_database(tmp_path):
    from birdclef import ann

    db = str(tmp_path / "v.sqlite")
    con, x = _vector_db(db, 20000)
    logs = []
    index = ann.open_index(con, db, "window", x.shape[1], logs.append)
    assert any("building" in line for line in logs) and len(index) == 20000
    rng = np.random.default_rng(1)
    queries = x[rng.integers(0, len(x), 50)] + 0.1 * rng.standard_normal((50, x.shape[1])).astype(np.float32)
    exact = np.stack([embeddings.exact_topk(con, q / np.linalg.norm(q), 10)[0] for q in queries])
    approx = np.stack([ann.search(index, q, 10)[0] for q in queries])
    assert ann.recall_at_k(exact, approx) >= 0.95
    # exact search against a brute-force reference
    q = queries[0] / np.linalg.norm(queries[0])
    ids, sims = embeddings.exact_topk(con, q, 10, block=3000)
    np.testing.assert_array_equal(ids, np.argsort(-(x @ q))[:10] + 1)
    # rows added later are added to the index; a replaced file's rows make it rebuild
    con.executemany("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (1, 'window', 0, 5, ?)",
                    [(v.tobytes(),) for v in x[:10]])
    con.commit()
    logs.clear()
    assert len(ann.open_index(con, db, "window", x.shape[1], logs.append)) == 20010 and not logs
    con.execute("DELETE FROM embedding WHERE id <= 5")
    con.commit()
    index = ann.open_index(con, db, "window", x.shape[1], logs.append)
    assert any("building" in line for line in logs) and len(index) == 20005
    assert 3 not in set(ann.search(index, x[2], 10)[0].tolist())
