"""Search at archive scale: exact against the approximate index, on synthetic embeddings.

    python bench/search.py [--vectors 1000000] [--dim 128] [--queries 200] [--k 10] [--work /tmp/birdclef-bench-search]

Writes an embedding database of N unit vectors drawn around 2,000 cluster centres (as embeddings of
calls of many species and sites are), builds the usearch index (`birdclef.ann`) and runs the same
queries (stored vectors plus noise) through exact search (`birdclef.embeddings.exact_topk`, every
vector compared) and through the index. Prints build time, per-query median and p95 of both, the
speed-up, and recall@k of the index against exact. Target (issue 15): on 1,000,000 vectors, ≤ 50 ms
per query median with the index and recall@10 ≥ 0.95.
The database is reused while its vector count and dimension stay the same.

With `--stores`, the same queries also go through the other stores we could have chosen, where installed
(`pip install 'birdclef[bench]'`): faiss (`faiss-flat`: exact inner product over a float32 matrix in
memory; `faiss-hnsw`: HNSW, M=32, efSearch 64) and sqlite-vec (`sqlite-vec`: a vec0 table in SQLite,
exact). Each gets its build time, per-query median and p95, recall@k against exact and the resident
memory it added. perch-hoplite's database is SQLite with a usearch index (its `sqlite_usearch_impl`),
the same pair as ours, so the `usearch` row stands for it.
"""
from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from birdclef import ann, embeddings  # noqa: E402


def make_db(path: str, n: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    con = embeddings.connect(path)
    con.execute("INSERT INTO recording (path, duration_s, windows, done) VALUES ('/synthetic.wav', ?, ?, 1)",
                (5.0 * n, n))
    block = 50_000
    for first in range(0, n, block):
        m = min(block, n - first)
        x = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        con.executemany("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (1, 'window', ?, ?, ?)",
                        [(5.0 * (first + i), 5.0 * (first + i) + 5, v.tobytes()) for i, v in enumerate(x)])
        con.commit()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=20, help="exact search is slow: fewer of its queries timed")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--work", default="/tmp/birdclef-bench-search")
    ap.add_argument("--stores", default="", help="comma list of other stores to measure on the same queries: "
                    "faiss-flat, faiss-hnsw, sqlite-vec (installed by the [bench] extra)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    db = f"{args.work}/vectors-{args.vectors}-{args.dim}.sqlite"
    if not os.path.exists(db):
        t0 = time.perf_counter()
        make_db(db + ".part", args.vectors, args.dim)
        os.replace(db + ".part", db)
        print(f"database: {args.vectors} vectors of {args.dim} written in {time.perf_counter() - t0:.0f} s")
    con = sqlite3.connect(db)
    t0 = time.perf_counter()
    index = ann.open_index(con, db, "window", args.dim, log=print)
    print(f"index ready in {time.perf_counter() - t0:.1f} s ({len(index)} vectors)")
    rng = np.random.default_rng(1)
    ids = rng.integers(1, args.vectors + 1, args.queries)
    queries = []
    for i in ids:
        v = np.frombuffer(con.execute("SELECT vector FROM embedding WHERE id = ?", (int(i),)).fetchone()[0], np.float32)
        q = v + 0.05 * rng.standard_normal(args.dim).astype(np.float32)
        queries.append(q / np.linalg.norm(q))
    approx_t, approx_ids = [], []
    for q in queries:
        t = time.perf_counter()
        found, _ = ann.search(index, q, args.k)
        approx_t.append(time.perf_counter() - t)
        approx_ids.append(found)
    exact_t, exact_ids = [], []
    for q in queries[:args.exact_queries]:
        t = time.perf_counter()
        found, _ = embeddings.exact_topk(con, q, args.k)
        exact_t.append(time.perf_counter() - t)
        exact_ids.append(found)
    recall = ann.recall_at_k(np.stack(exact_ids), np.stack(approx_ids[:args.exact_queries]))
    a, e = np.array(approx_t) * 1000, np.array(exact_t) * 1000
    print(f"\n| search ({args.vectors:,} vectors, k={args.k}) | median ms | p95 ms | queries |")
    print("|---|---|---|---|")
    print(f"| exact | {np.median(e):.1f} | {np.percentile(e, 95):.1f} | {len(e)} |")
    print(f"| approximate (usearch) | {np.median(a):.2f} | {np.percentile(a, 95):.2f} | {len(a)} |")
    print(f"\nspeed-up (exact / approximate, medians): {np.median(e) / np.median(a):.0f}x")
    print(f"recall@{args.k} of the index against exact, {len(exact_ids)} queries: {recall:.3f} (target >= 0.95)")
    print(f"approximate median {np.median(a):.2f} ms against the 50 ms target: ratio {np.median(a) / 50:.3f}")
    stores = [x for x in args.stores.split(",") if x]
    if stores:
        compare_stores(con, stores, queries, np.stack(exact_ids), args.k, args.exact_queries)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _all_vectors(con) -> np.ndarray:
    rows = con.execute("SELECT vector FROM embedding WHERE kind = 'window' ORDER BY id").fetchall()
    return np.stack([np.frombuffer(r[0], np.float32) for r in rows])


def compare_stores(con, stores: list[str], queries: list[np.ndarray], exact: np.ndarray, k: int, n_exact: int):
    """The same queries through other candidate stores; ids are 1-based like the embedding table's."""
    t0 = time.perf_counter()
    x = _all_vectors(con)
    print(f"\nvectors read into memory for the other stores in {time.perf_counter() - t0:.0f} s")
    rows = []
    for name in stores:
        before = _rss_mb()
        t0 = time.perf_counter()
        try:
            query = _store(name, x)
        except ImportError as e:
            print(f"{name}: not installed ({e}); pip install 'birdclef[bench]'")
            continue
        build = time.perf_counter() - t0
        times, found = [], []
        n = n_exact if name in ("sqlite-vec",) else len(queries)  # exact stores are slow: fewer timed
        for q in queries[:n]:
            t = time.perf_counter()
            found.append(query(q, k))
            times.append(time.perf_counter() - t)
        ms = np.array(times) * 1000
        recall = ann.recall_at_k(exact, np.stack(found[:n_exact]))
        rows.append((name, build, np.median(ms), np.percentile(ms, 95), recall, len(ms), _rss_mb() - before))
    print(f"\n| store ({len(x):,} vectors, k={k}) | build s | median ms | p95 ms | recall@{k} | queries | peak memory added MB |")
    print("|---|---|---|---|---|---|---|")
    for name, build, med, p95, recall, n, mem in rows:
        print(f"| {name} | {build:.1f} | {med:.2f} | {p95:.2f} | {recall:.3f} | {n} | {mem:.0f} |")


def _store(name: str, x: np.ndarray):
    """Build store `name` over x; returns query(q, k) -> 1-based ids, best first."""
    dim = x.shape[1]
    if name in ("faiss-flat", "faiss-hnsw"):
        import faiss

        if name == "faiss-flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 64
        index.add(x)

        def query(q, k):
            return index.search(q[None, :].astype(np.float32), k)[1][0] + 1
        return query
    if name == "sqlite-vec":
        import sqlite3

        import sqlite_vec

        if not hasattr(sqlite3.Connection, "enable_load_extension"):  # a Python built without it (pyenv's)
            import pysqlite3 as sqlite3
        db = sqlite3.connect(":memory:")
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        db.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}] distance_metric=cosine)")
        block = 50_000
        for first in range(0, len(x), block):
            db.executemany("INSERT INTO v (rowid, embedding) VALUES (?, ?)",
                           [(first + i + 1, v.tobytes()) for i, v in enumerate(x[first:first + block])])
        db.commit()

        def query(q, k):
            got = db.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                             (q.astype(np.float32).tobytes(), k)).fetchall()
            return np.array([r[0] for r in got])
        return query
    raise SystemExit(f"--stores: unknown store {name!r}; choose faiss-flat, faiss-hnsw, sqlite-vec")


if __name__ == "__main__":
    main()
