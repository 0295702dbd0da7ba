"""An embedding database of recordings, and search by example.

    birdclef embed AUDIO_OR_FOLDER [...] --ckpt-dir C --db DB.sqlite
    birdclef search --db DB.sqlite --query AUDIO[@START-END] [-k 50] --out DIR

The store is one SQLite file (Python's own sqlite3: no server, one file to copy or back up):

  model      the one model whose embeddings the database holds: its path, fingerprint (what it
             answers on a fixed probe, as predict uses) and embedding size. A second model on the
             same database is refused, never mixed.
  recording  one row per input file: path, duration, windows, done (set once all its rows are in,
             in the same transaction, so an interrupted run redoes only unfinished files)
  embedding  one row per 5 s window (kind 'window': the mean of its chunks' embeddings, L2-normalised,
             over the chunks predict's padding rule lets speak for the window) and per 2 s chunk
             (kind 'chunk'): recording, start and end in seconds, and the float32 vector

Search is exact (cosine similarity of the query against every stored vector of the chosen kind, in
blocks, so memory stays bounded by the block size) or, above AUTO_APPROX vectors or with --index approx,
through an approximate HNSW index kept beside the database (`birdclef.ann`, usearch).
"""
from __future__ import annotations

import errno
import os
import sqlite3
import time

import numpy as np
import pandas as pd

from birdclef import audio, fileio
from birdclef.prefetch import prefetch
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES, AudioConfig, FeatureConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS model (id INTEGER PRIMARY KEY CHECK (id = 1), path TEXT, fingerprint TEXT,
                                  dim INTEGER, created TEXT);
CREATE TABLE IF NOT EXISTS recording (id INTEGER PRIMARY KEY, path TEXT UNIQUE, duration_s REAL,
                                      windows INTEGER, done INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS embedding (id INTEGER PRIMARY KEY, recording_id INTEGER REFERENCES recording(id),
                                      kind TEXT, start_s REAL, end_s REAL, vector BLOB);
CREATE INDEX IF NOT EXISTS embedding_kind ON embedding(kind, recording_id);
"""
KINDS = ("window", "chunk")


class EmbedError(Exception):
    pass


def is_disk_full(e: sqlite3.Error) -> bool:
    """SQLite's 'database or disk is full' (SQLITE_FULL)."""
    return "full" in str(e).lower()


def disk_full(e: sqlite3.Error, db: str) -> None:
    """SQLite's full error raised as the OSError of a full disk naming the database (the CLI's one line
    for a full disk, instead of calling the file no database); other errors: nothing."""
    if is_disk_full(e):
        raise OSError(errno.ENOSPC, "No space left on device", db) from e


def connect(db: str) -> sqlite3.Connection:
    if fileio.is_remote(db):
        raise EmbedError(f"--db {db}: the database is a local SQLite file; fix: give a local path "
                         "(the audio may stay remote)")
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    try:
        con = sqlite3.connect(db)
        con.executescript(SCHEMA)
    except sqlite3.DatabaseError as e:
        disk_full(e, db)
        raise EmbedError(f"--db {db} is not an embedding database ({e}); fix: give the SQLite file `birdclef "
                         "embed` made, or a new path") from None
    return con


def claim_model(con: sqlite3.Connection, db: str, model_path: str, fingerprint: str, dim: int) -> None:
    row = con.execute("SELECT path, fingerprint, dim FROM model").fetchone()
    if row is None:
        con.execute("INSERT INTO model VALUES (1, ?, ?, ?, ?)", (model_path, fingerprint, dim,
                                                                time.strftime("%Y-%m-%d %H:%M:%S")))
        con.commit()
    elif row[1] != fingerprint:
        raise EmbedError(f"{db} holds embeddings of another model ({row[0]}); fix: use another --db for "
                         f"{model_path} (embeddings of two models are never mixed; nothing was written)")


def window_embeddings(out: dict, n_samples: int, n_real: int | None = None, cfg: FeatureConfig = DEFAULT_FEATURES):
    """(window vectors [W, D], chunk vectors [n, D], chunk starts s [n]) of one block of n_samples (of
    which n_real are audio, the rest padding) from a model's output: a window's vector is the
    normalised mean of the chunks that speak for it (predict's padding rule)."""
    from birdclef import predict

    emb = predict.as_numpy(out["embedding"]).astype(np.float32)
    starts, w, use, n_win = predict.speaking_chunks(out, n_samples, n_real, cfg)
    sums = np.zeros((n_win, emb.shape[1]), np.float64)
    np.add.at(sums, w[use], emb[use])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32), emb, starts


def embed(model_path: str, inputs: list[str], db: str, acfg: AudioConfig = DEFAULT_AUDIO,
          cfg: FeatureConfig = DEFAULT_FEATURES, log=print) -> dict:
    from tqdm import tqdm

    from birdclef import predict

    serve, classes, path = predict.load_model(model_path)
    files, twice = predict.input_files(inputs)
    # stored absolute: search and review find the audio from any folder
    files = [fileio.absolute(f) for f in files]
    con = connect(db)
    probe_out = serve(waveform=np.zeros(int(cfg.window_s * cfg.sample_rate), np.float32))
    dim = int(predict.as_numpy(probe_out["embedding"]).shape[1])
    claim_model(con, db, path, predict.model_fingerprint(serve, cfg), dim)
    done = {p for (p,) in con.execute("SELECT path FROM recording WHERE done = 1")}
    quarantined, added = [], 0
    for f in tqdm(files, desc="embed", unit="file", disable=None, leave=False):
        if f in done:
            continue
        rows, read = [], [0]

        def counted(blocks):
            for blk in blocks:
                read[0] += len(blk)
                yield blk

        win = int(round(cfg.window_s * cfg.sample_rate))
        try:
            for first, wave in predict.windows_of(counted(prefetch(audio.stream(f, acfg, allow_silent=True))), cfg):
                n_real = min(len(wave), read[0] - first * win)
                wins, chunks, starts = window_embeddings(serve(waveform=wave), len(wave), n_real, cfg)
                offset = first * cfg.window_s
                rows += [("window", offset + i * cfg.window_s, offset + (i + 1) * cfg.window_s, v.tobytes())
                         for i, v in enumerate(wins)]
                rows += [("chunk", offset + s, offset + s + cfg.chunk_s, v.tobytes())
                         for s, v in zip(starts, chunks) if s * cfg.sample_rate < n_real]
        except audio.AudioError as e:
            quarantined.append({"path": f, "reason": e.reason, "message": str(e)})
            log(f"embed: skipped {e}")
            continue
        try:
            with con:  # one transaction per file: all its rows and its done mark, or nothing
                con.execute("DELETE FROM embedding WHERE recording_id IN (SELECT id FROM recording WHERE path = ?)", (f,))
                con.execute("INSERT OR REPLACE INTO recording (path, duration_s, windows, done) VALUES (?, ?, ?, 0)",
                            (f, read[0] / cfg.sample_rate, sum(r[0] == "window" for r in rows)))
                rid = con.execute("SELECT id FROM recording WHERE path = ?", (f,)).fetchone()[0]
                con.executemany("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (?, ?, ?, ?, ?)",
                                [(rid, *r) for r in rows])
                con.execute("UPDATE recording SET done = 1 WHERE id = ?", (rid,))
        except sqlite3.OperationalError as e:
            disk_full(e, db)
            raise
        added += 1
    total = con.execute("SELECT COUNT(*) FROM embedding WHERE kind = 'window'").fetchone()[0]
    con.close()
    summary = {"files": len(files), "embedded": added, "resumed": len(done & set(files)),
               "quarantined": quarantined, "windows_in_db": int(total), "db": db, "given_twice": len(twice)}
    log(f"embed: {added} of {len(files)} files embedded ({summary['resumed']} already in {db}), "
        f"{len(quarantined)} skipped; {total} windows in the database")
    return summary


def parse_query(query: str) -> tuple[str, float | None, float | None]:
    """AUDIO[@START-END] -> (path, start s or None, end s or None)."""
    if "@" in query:
        path, span = query.rsplit("@", 1)
        try:
            a, b = (float(x) for x in span.split("-", 1))
        except ValueError:
            raise EmbedError(f"--query {query}: the span after @ is START-END in seconds, e.g. clip.wav@12.5-15") from None
        if not 0 <= a < b:
            raise EmbedError(f"--query {query}: START-END needs 0 <= START < END")
        return path, a, b
    return query, None, None


AUTO_APPROX = 200_000  # --index auto: exact search up to this many vectors (under ~1 s), the approximate index above


def vector_blocks(con: sqlite3.Connection, kind: str, after_id: int = 0, block: int = 100_000):
    """(row ids int64 [n], vectors float32 [n, D]) of the stored vectors of `kind` with id > after_id, in
    id order, `block` rows at a time."""
    cur = con.execute("SELECT id, vector FROM embedding WHERE kind = ? AND id > ? ORDER BY id", (kind, after_id))
    while True:
        rows = cur.fetchmany(block)
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        yield ids, np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)


def exact_topk(con: sqlite3.Connection, q: np.ndarray, k: int, kind: str = "window",
               block: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, cosine similarities) of the k stored vectors of `kind` nearest to q, best first:
    every vector compared, block by block, so memory stays bounded by the block."""
    best_s, best_id = np.zeros(0, np.float32), np.zeros(0, np.int64)
    for ids, vecs in vector_blocks(con, kind, block=block):
        s = vecs @ q
        if len(s) > k:
            top = np.argpartition(-s, k - 1)[:k]
            s, ids = s[top], ids[top]
        best_s, best_id = np.concatenate([best_s, s]), np.concatenate([best_id, ids])
        keep = np.argsort(-best_s, kind="stable")[:k]
        best_s, best_id = best_s[keep], best_id[keep]
    return best_id, best_s


def search(db: str, query: str, k: int = 50, kind: str = "window", out: str | None = None,
           acfg: AudioConfig = DEFAULT_AUDIO, cfg: FeatureConfig = DEFAULT_FEATURES, block: int = 100_000,
           index: str = "auto", log=print) -> pd.DataFrame:
    """The k stored windows (or chunks) most similar to the query audio, best first. index: exact
    (every vector compared), approx (the usearch index of `birdclef.ann`) or auto (exact up to
    AUTO_APPROX vectors)."""
    from birdclef import predict

    if not os.path.exists(db):
        raise EmbedError(f"--db {db} does not exist; fix: make it with `birdclef embed AUDIO --ckpt-dir C --db {db}`")
    con = connect(db)
    row = con.execute("SELECT path, dim FROM model").fetchone()
    if row is None:
        raise EmbedError(f"{db} holds no embeddings yet; fix: run `birdclef embed` into it first")
    serve, _, _ = predict.load_model(row[0])
    path, a, b = parse_query(query)
    try:
        wave = audio.load(path, acfg, allow_silent=True)
    except audio.AudioError as e:
        raise EmbedError(f"--query: {e}") from e
    if a is not None:
        wave = wave[int(a * cfg.sample_rate):int(b * cfg.sample_rate)]
        if len(wave) == 0:
            raise EmbedError(f"--query {query}: the span is past the end of {path}")
    o = serve(waveform=wave)
    q = predict.as_numpy(o["embedding"]).astype(np.float64).mean(0)
    q = (q / max(np.linalg.norm(q), 1e-12)).astype(np.float32)
    n = con.execute("SELECT COUNT(*) FROM embedding WHERE kind = ?", (kind,)).fetchone()[0]
    approx = index == "approx" or (index == "auto" and n > AUTO_APPROX)
    if approx and n:
        from birdclef import ann

        best_id, best_s = ann.search(ann.open_index(con, db, kind, len(q), log), q, k)
        keep = best_id >= 0
        best_id, best_s = best_id[keep], best_s[keep]
    else:
        best_id, best_s = exact_topk(con, q, k, kind, block)
    if not len(best_id):
        con.close()
        raise EmbedError(f"{db} holds no {kind} embeddings")
    placeholders = ",".join("?" * len(best_id))
    meta = pd.read_sql_query(f"SELECT e.id, r.path AS file, e.start_s, e.end_s FROM embedding e JOIN recording r "
                             f"ON r.id = e.recording_id WHERE e.id IN ({placeholders})", con,
                             params=[int(i) for i in best_id]).set_index("id")
    con.close()
    res = meta.loc[best_id].reset_index(drop=True)
    res.insert(0, "rank", np.arange(1, len(res) + 1))
    res["similarity"] = best_s
    if out:
        fileio.write_text(fileio.join(out, "search.csv"), res.to_csv(index=False, float_format="%.5f"))
        lines = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                 "Begin File\tRank\tSimilarity"]
        for i, r in res.iterrows():
            lines.append(f"{i + 1}\tSpectrogram 1\t1\t{r.start_s:.3f}\t{r.end_s:.3f}\t{cfg.fmin:.0f}\t{cfg.fmax:.0f}\t"
                         f"{fileio.basename(r.file)}\t{r['rank']}\t{r.similarity:.5f}")
        fileio.write_text(fileio.join(out, "search.selections.txt"), "\n".join(lines) + "\n")
        log(f"search: {len(res)} best {kind}s for {query} in {out}/search.csv and search.selections.txt")
    return res
