"""Approximate nearest-neighbour index of an embedding database (usearch HNSW), for search at archive scale.

One index file per kind next to the database (`DB.window.usearch`, `DB.chunk.usearch`): keys are the
embedding row ids, vectors stored as float16, cosine metric. The database records what each index
holds (table `ann`: rows and the highest row id indexed), so:

  - rows added by a later `birdclef embed` are added to the index on the next search;
  - rows deleted or replaced (a file embedded again) make the index stale, and it is rebuilt;
  - a missing or unreadable index file is rebuilt.

The exact search of `birdclef.embeddings` stays the reference: `recall_at_k` measures the index
against it (bench/search.py prints both on a million vectors).
"""
from __future__ import annotations

import os
import sqlite3
import time

import numpy as np

ANN_SCHEMA = """
CREATE TABLE IF NOT EXISTS ann (kind TEXT PRIMARY KEY, path TEXT, n INTEGER, max_id INTEGER, built TEXT);
"""
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
BLOCK = 100_000


def index_path(db: str, kind: str) -> str:
    return f"{db}.{kind}.usearch"


def _new(dim: int):
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype="f16", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                 expansion_search=EXPANSION_SEARCH)


def _add_rows(index, con: sqlite3.Connection, kind: str, after_id: int) -> tuple[int, int]:
    """Add the rows of `kind` with id > after_id; (rows added, highest id)."""
    from birdclef.embeddings import vector_blocks

    added, top = 0, after_id
    for ids, vecs in vector_blocks(con, kind, after_id, BLOCK):
        index.add(ids.astype(np.uint64), vecs, threads=0)
        added, top = added + len(ids), int(ids[-1])
    return added, top


def open_index(con: sqlite3.Connection, db: str, kind: str, dim: int, log=print):
    """The index of `kind`, built or brought up to date with the database first."""
    con.executescript(ANN_SCHEMA)
    path = index_path(db, kind)
    row = con.execute("SELECT n, max_id FROM ann WHERE kind = ?", (kind,)).fetchone()
    index = None
    if row is not None and os.path.exists(path):
        n, max_id = row
        still = con.execute("SELECT COUNT(*) FROM embedding WHERE kind = ? AND id <= ?", (kind, max_id)).fetchone()[0]
        if still == n:
            try:
                index = _new(dim)
                index.load(path)
                if len(index) != n:
                    index = None
            except (RuntimeError, ValueError, OSError):
                index = None
    if index is None:
        t0 = time.perf_counter()
        index, n, max_id = _new(dim), 0, 0
        log(f"search: building the approximate index of {kind}s in {path}")
    else:
        t0 = None
    added, top = _add_rows(index, con, kind, max_id)
    if added or t0 is not None:
        tmp = f"{path}.tmp"
        index.save(tmp)
        os.replace(tmp, path)  # a kill never leaves a half-written index under the real name
        with con:
            con.execute("INSERT OR REPLACE INTO ann VALUES (?, ?, ?, ?, ?)",
                        (kind, path, n + added, max(top, max_id), time.strftime("%Y-%m-%dT%H:%M:%S")))
        if t0 is not None:
            log(f"search: indexed {n + added} {kind}s in {time.perf_counter() - t0:.1f} s")
    return index


def search(index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, cosine similarities) of the k nearest, best first."""
    m = index.search(np.asarray(q, np.float32), k)
    return np.asarray(m.keys, np.int64), (1.0 - np.asarray(m.distances, np.float64)).astype(np.float32)


def recall_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    """Share of the exact top-k found in the approximate top-k (rows: queries)."""
    exact_ids, approx_ids = np.atleast_2d(exact_ids), np.atleast_2d(approx_ids)
    hits = [len(set(e.tolist()) & set(a.tolist())) / max(1, len(e)) for e, a in zip(exact_ids, approx_ids)]
    return float(np.mean(hits))
