"""Review windows in the browser and label them: `birdclef review --db DB [--results CSV] [--port 8000]`.

A local web page (FastAPI served by uvicorn, bound to 127.0.0.1 unless --host says otherwise) that
pages through windows, shows each one's spectrogram, plays its audio and records a label per window in
the embedding database, with the time it was given:

  items     what is reviewed: the rows of a results CSV (`birdclef search`'s search.csv, `birdclef
            predict`'s detections.csv or scores.csv: any CSV with file, start_s, end_s), best first as
            the file orders them; without --results, every window of the database in recording order
  labels    table `label` of the database: one row per label given (path, start_s, end_s, label,
            given_at); the newest row of a window is its label, older ones stay as its history.
            A label is a species code (lower case letters, digits, `_` or `-`: a class of the model or
            a new call type of the user's), `not` (no such call here) or `unsure`.

Every asset (HTML, script, style) is served by the package: the page works offline. The spectrogram
shown is a display image (log power of a short-time Fourier transform), not a model feature.
`birdclef classify` trains on the labels given here.
"""
from __future__ import annotations

import io
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef import audio, fileio
from birdclef.config import DEFAULT_AUDIO, DEFAULT_FEATURES

STATIC = Path(__file__).resolve().parent / "static"
LABEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS label (id INTEGER PRIMARY KEY, path TEXT, start_s REAL, end_s REAL, label TEXT,
                                  given_at TEXT);
CREATE INDEX IF NOT EXISTS label_window ON label(path, start_s);
"""
SPECIAL = ("not", "unsure")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
PAGE_MAX = 200


class ReviewError(Exception):
    pass


def check_label(label: str) -> str:
    label = str(label).strip()
    if label in SPECIAL or _CODE.match(label):
        return label
    raise ReviewError(f"label {label!r}: give a species code (lower case letters, digits, _ or -, e.g. norcar), "
                      "`not` or `unsure`")


def read_results(path: str) -> pd.DataFrame:
    """file, start_s, end_s, score, suggestion of a results CSV, in its order. Relative file paths are
    taken relative to the CSV's folder when they do not exist as given."""
    if not fileio.exists(path):
        raise ReviewError(f"--results {path} does not exist; fix: give a search.csv, detections.csv or scores.csv")
    try:
        df = pd.read_csv(io.StringIO(fileio.read_text(path)), dtype={"file": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ReviewError(f"--results {path} is not a readable CSV ({e}); fix: give the CSV that search or "
                          "predict wrote") from None
    missing = [c for c in ("file", "start_s", "end_s") if c not in df.columns]
    if missing:
        raise ReviewError(f"--results {path} has no {', '.join(missing)} column; fix: give search.csv, "
                          "detections.csv or scores.csv as search or predict wrote them")
    score = next((c for c in ("similarity", "score", "bird") if c in df.columns), None)
    out = pd.DataFrame({"file": df["file"].astype(str), "start_s": df["start_s"].astype(float),
                        "end_s": df["end_s"].astype(float),
                        "score": df[score].astype(float) if score else np.nan,
                        "suggestion": df["species"].astype(str) if "species" in df.columns else ""})
    base = fileio.dirname(path)
    for f in out["file"].unique():
        if not fileio.is_remote(f) and not os.path.isabs(f) and not os.path.exists(f):
            out.loc[out["file"] == f, "file"] = os.path.abspath(os.path.join(base, f))
    return out.reset_index(drop=True)


class Store:
    """The items under review and their labels, in the embedding database (one connection per thread:
    uvicorn answers from a thread pool)."""

    def __init__(self, db: str, results: str | None = None):
        if fileio.is_remote(db) or not os.path.exists(db):
            raise ReviewError(f"--db {db} does not exist; fix: make it with `birdclef embed AUDIO --ckpt-dir C "
                              f"--db {db}` (or give a local database file)")
        self.db = db
        self._local = threading.local()
        con = self.con()
        try:
            con.executescript(LABEL_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ReviewError(f"--db {db} is not an SQLite database ({e}); fix: give the file `birdclef embed` "
                              "made") from None
        self.results = read_results(results) if results else None
        self.results_path = results
        if self.results is None:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "embedding" not in tables:
                raise ReviewError(f"--db {db} holds no embeddings; fix: run `birdclef embed` into it, or give "
                                  "--results CSV")
        self.classes = self._model_classes()

    def con(self) -> sqlite3.Connection:
        c = getattr(self._local, "con", None)
        if c is None:
            c = self._local.con = sqlite3.connect(self.db, timeout=10)
        return c

    def _model_classes(self) -> list[str]:
        try:
            row = self.con().execute("SELECT path FROM model").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if not row:
            return []
        p = Path(row[0])
        for cand in (p / "classes.json", p.parent / "classes.json", p.parent.parent / "classes.json"):
            if cand.is_file():
                import json

                return [c for c in json.loads(cand.read_text()) if c != "nocall"]
        return []

    def total(self) -> int:
        if self.results is not None:
            return len(self.results)
        return int(self.con().execute("SELECT COUNT(*) FROM embedding WHERE kind = 'window'").fetchone()[0])

    def page(self, page: int, size: int) -> list[dict]:
        size = max(1, min(int(size), PAGE_MAX))
        first = max(0, int(page)) * size
        if self.results is not None:
            rows = self.results.iloc[first:first + size]
            items = [{"item": int(i), "file": r.file, "start_s": float(r.start_s), "end_s": float(r.end_s),
                      "score": None if r.score != r.score else float(r.score), "suggestion": r.suggestion or ""}
                     for i, r in zip(rows.index, rows.itertuples(index=False))]
        else:
            rows = self.con().execute(
                "SELECT r.path, e.start_s, e.end_s FROM embedding e JOIN recording r ON r.id = e.recording_id "
                "WHERE e.kind = 'window' ORDER BY e.id LIMIT ? OFFSET ?", (size, first)).fetchall()
            items = [{"item": first + j, "file": f, "start_s": a, "end_s": b, "score": None, "suggestion": ""}
                     for j, (f, a, b) in enumerate(rows)]
        labels = self.labels([(it["file"], it["start_s"]) for it in items])
        for it in items:
            it["name"] = fileio.basename(it["file"])
            it["label"], it["given_at"] = labels.get((it["file"], round(it["start_s"], 3)), (None, None))
        return items

    def item(self, i: int) -> dict:
        if not 0 <= i < self.total():
            raise KeyError(i)
        if self.results is not None:
            r = self.results.iloc[i]
            return {"file": r.file, "start_s": float(r.start_s), "end_s": float(r.end_s)}
        f, a, b = self.con().execute(
            "SELECT r.path, e.start_s, e.end_s FROM embedding e JOIN recording r ON r.id = e.recording_id "
            "WHERE e.kind = 'window' ORDER BY e.id LIMIT 1 OFFSET ?", (i,)).fetchone()
        return {"file": f, "start_s": a, "end_s": b}

    def labels(self, windows: list[tuple[str, float]]) -> dict:
        """(path, start_s rounded to ms) -> (newest label, its time) of the given windows."""
        out = {}
        con = self.con()
        for f, a in windows:
            row = con.execute("SELECT label, given_at FROM label WHERE path = ? AND abs(start_s - ?) < 0.0005 "
                              "ORDER BY id DESC LIMIT 1", (f, a)).fetchone()
            if row:
                out[(f, round(a, 3))] = row
        return out

    def set_label(self, i: int, label: str) -> dict:
        label = check_label(label)
        it = self.item(i)
        given = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        con = self.con()
        try:
            with con:
                con.execute("INSERT INTO label (path, start_s, end_s, label, given_at) VALUES (?, ?, ?, ?, ?)",
                            (it["file"], it["start_s"], it["end_s"], label, given))
        except sqlite3.OperationalError as e:  # the page shows this line; the labels given before are kept
            from birdclef.embeddings import is_disk_full

            if is_disk_full(e):
                raise ReviewError(f"the disk holding {self.db} is full: this label was not kept; fix: free space "
                                  "there and give it again") from e
            raise
        return {"item": i, "label": label, "given_at": given}


def window_audio(item: dict) -> np.ndarray:
    return audio.segment(item["file"], item["start_s"], item["end_s"], DEFAULT_AUDIO)


def wav_bytes(x: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def spectrogram_png(x: np.ndarray, sr: int, fmax: float = DEFAULT_FEATURES.fmax, rows: int = 160) -> bytes:
    """A display spectrogram: log power of a 1024-point STFT (hop 10 ms) up to fmax, averaged into
    `rows` frequency bands, low frequencies at the bottom, as an 8-bit palette PNG (magma): small and
    quick to encode (a full RGBA image of every FFT bin took 100-200 ms and 500 KB)."""
    from matplotlib import colormaps
    from PIL import Image
    from scipy import signal

    if len(x) < 1024:
        x = np.pad(x, (0, 1024 - len(x)))
    f, _, z = signal.stft(x, sr, nperseg=1024, noverlap=1024 - sr // 100, boundary=None, padded=False)
    power = np.abs(z[f <= fmax]) ** 2
    edges = np.linspace(0, len(power), rows + 1).astype(int)
    power = np.add.reduceat(power, edges[:-1], axis=0) / np.maximum(np.diff(edges), 1)[:, None]
    db = 10 * np.log10(power + 1e-10)
    lo, hi = np.percentile(db, 5), db.max()
    img = (np.clip((db - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)[::-1]
    out = Image.fromarray(np.ascontiguousarray(img), mode="P")
    out.putpalette((colormaps["magma"](np.arange(256))[:, :3] * 255).astype(np.uint8).ravel().tolist())
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_app(store: Store):
    from fastapi import Body, FastAPI, HTTPException
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="birdclef review", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def one(i: int) -> dict:
        try:
            return store.item(i)
        except KeyError:
            raise HTTPException(404, f"no item {i}: the review holds {store.total()}") from None

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/meta")
    def meta():
        return {"total": store.total(), "db": store.db, "results": store.results_path, "classes": store.classes,
                "special": list(SPECIAL)}

    @app.get("/api/items")
    def items(page: int = 0, size: int = 20):
        return {"page": page, "size": size, "total": store.total(), "items": store.page(page, size)}

    def clip(i: int) -> np.ndarray:
        try:
            return window_audio(one(i))
        except audio.AudioError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/api/audio/{i}.wav")
    def audio_of(i: int):
        return Response(wav_bytes(clip(i), DEFAULT_AUDIO.sample_rate), media_type="audio/wav")

    @app.get("/api/spectrogram/{i}.png")
    def spectrogram_of(i: int):
        return Response(spectrogram_png(clip(i), DEFAULT_AUDIO.sample_rate), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/label")
    def label(item: int = Body(...), label: str = Body(...)):
        one(item)
        try:
            return store.set_label(item, label)
        except ReviewError as e:
            raise HTTPException(400, str(e)) from None

    return app


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(db: str, results: str | None = None, host: str = "127.0.0.1", port: int = 8000, log=print) -> None:
    import uvicorn

    store = Store(db, results)
    if not port_free(host, port):
        raise ReviewError(f"--port {port}: {host}:{port} is in use; fix: give another --port")
    log(f"review: {store.total()} windows of {results or db} at http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(make_app(store), host=host, port=port, log_level="warning")
