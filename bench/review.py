"""The review page's response times with 10,000 results in the database.

    python bench/review.py [--results 10000] [--requests 50]

Builds an embedding database whose 10,000 windows point into the shared soundscapes (5 s each,
cycling through the files) and a search.csv ranking all of them, serves `birdclef review --results` on
loopback (uvicorn in this process, a real HTTP client) and times what a reviewer does: open the page,
fetch a page of 20 items (first and last page), fetch a window's audio and its spectrogram, label a
window. Prints median and p95 per action and the ratio of the p95 to the 200 ms target (issue 15).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("BIRDCLEF_SHARED_DATA", REPO.parent / "shared" / "data"))

from birdclef import audio, embeddings, review  # noqa: E402


def build(work: str, n: int) -> tuple[str, str]:
    files = sorted(str(p) for p in (SHARED / "birdclef-plus" / "train_soundscapes").glob("*.ogg"))
    wins = {f: int(audio.duration(f) // 5) for f in files}
    db, csv = f"{work}/review.sqlite", f"{work}/search.csv"
    con = embeddings.connect(db)
    rid = {}
    for f in files:
        con.execute("INSERT INTO recording (path, duration_s, windows, done) VALUES (?, ?, ?, 1)", (f, wins[f] * 5, wins[f]))
        rid[f] = con.execute("SELECT id FROM recording WHERE path = ?", (f,)).fetchone()[0]
    rng = np.random.default_rng(0)
    rows, lines = [], ["rank,file,start_s,end_s,similarity"]
    for i in range(n):
        f = files[i % len(files)]
        start = 5.0 * ((i // len(files)) % wins[f])
        rows.append((rid[f], start, start + 5, rng.standard_normal(128).astype(np.float32).tobytes()))
        lines.append(f"{i + 1},{f},{start},{start + 5},{1 - i / n:.5f}")
    con.executemany("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (?, 'window', ?, ?, ?)",
                    rows)
    con.commit()
    con.close()
    Path(csv).write_text("\n".join(lines) + "\n")
    return db, csv


def main() -> None:
    import httpx
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="birdclef-bench-review-")
    db, csv = build(work, args.results)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(review.make_app(review.Store(db, csv)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    rng = np.random.default_rng(1)
    last_page = (args.results - 1) // 20
    actions = {
        "open the page": lambda c, i: c.get("/"),
        "page of 20 (first)": lambda c, i: c.get("/api/items?page=0&size=20"),
        "page of 20 (last)": lambda c, i: c.get(f"/api/items?page={last_page}&size=20"),
        "window audio": lambda c, i: c.get(f"/api/audio/{i}.wav"),
        "spectrogram": lambda c, i: c.get(f"/api/spectrogram/{i}.png"),
        "label a window": lambda c, i: c.post("/api/label", json={"item": i, "label": "norcar"}),
    }
    print(f"| action ({args.results:,} results) | median ms | p95 ms | p95 / 200 ms |")
    print("|---|---|---|---|")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        for name, act in actions.items():
            times = []
            for _ in range(args.requests):
                i = int(rng.integers(0, args.results))
                t = time.perf_counter()
                r = act(c, i)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
            t = np.array(times)
            print(f"| {name} | {np.median(t):.1f} | {np.percentile(t, 95):.1f} | {np.percentile(t, 95) / 200:.3f} |")
    server.should_exit = True


if __name__ == "__main__":
    main()
