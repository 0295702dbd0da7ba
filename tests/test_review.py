"""birdclef review: the labelling page's API, its refusals, and the page itself in a real headless browser."""
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from birdclef import embeddings, review

SR = 32000


def _recording(path, seconds, freq):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


@pytest.fixture()
def db(tmp_path):
    """An embedding database of two recordings (three 5 s windows each), vectors made up: review reads
    no model."""
    path = str(tmp_path / "emb.sqlite")
    con = embeddings.connect(path)
    for k, freq in enumerate((1000, 3000)):
        f = str(tmp_path / f"rec{k}.wav")
        _recording(f, 15.0, freq)
        con.execute("INSERT INTO recording (path, duration_s, windows, done) VALUES (?, 15, 3, 1)", (f,))
        rid = con.execute("SELECT id FROM recording WHERE path = ?", (f,)).fetchone()[0]
        for w in range(3):
            con.execute("INSERT INTO embedding (recording_id, kind, start_s, end_s, vector) VALUES (?, 'window', ?, ?, ?)",
                        (rid, 5.0 * w, 5.0 * w + 5, np.ones(4, np.float32).tobytes()))
    con.commit()
    con.close()
    return path


@pytest.fixture()
def client(db):
    from fastapi.testclient import TestClient

    return TestClient(review.make_app(review.Store(db)))


def test_items_audio_and_spectrogram_of_each_window(client, tmp_path):
    meta = client.get("/api/meta").json()
    assert meta["total"] == 6
    page = client.get("/api/items?page=1&size=4").json()
    assert [it["item"] for it in page["items"]] == [4, 5]
    assert page["items"][0]["name"] == "rec1.wav" and page["items"][0]["start_s"] == 5.0
    wav = client.get("/api/audio/4.wav")
    assert wav.headers["content-type"] == "audio/wav"
    x, sr = sf.read(io.BytesIO(wav.content))
    assert sr == SR and len(x) == 5 * SR
    # the window's own audio: rec1 is a 3 kHz tone
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * SR / len(x) - 3000) < 10
    png = client.get("/api/spectrogram/4.png")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/audio/6.wav").status_code == 404
    # the page and every asset it uses come from the package (no CDN: works offline)
    html = client.get("/").text
    for asset in ("/static/review.js", "/static/review.css"):
        assert asset in html and client.get(asset).status_code == 200
    assert "http://" not in html and "https://" not in html


def test_labels_are_kept_with_their_time_and_history(client, db):
    assert client.post("/api/label", json={"item": 1, "label": "norcar"}).status_code == 200
    r = client.post("/api/label", json={"item": 1, "label": "not"}).json()
    assert r["label"] == "not" and r["given_at"][:4].isdigit()
    bad = client.post("/api/label", json={"item": 2, "label": "Rm -rf /"})
    assert bad.status_code == 400 and "species code" in bad.json()["detail"]
    assert client.post("/api/label", json={"item": 99, "label": "not"}).status_code == 404
    items = client.get("/api/items?page=0&size=3").json()["items"]
    assert [it["label"] for it in items] == [None, "not", None]  # the newest label of a window counts
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT label, given_at FROM label ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["norcar", "not"] and all(r[1] for r in rows)  # history kept


def test_results_csv_is_paged_in_its_order_with_relative_paths(db, tmp_path):
    from fastapi.testclient import TestClient

    out = tmp_path / "search"
    out.mkdir()
    (out / "search.csv").write_text("rank,file,start_s,end_s,similarity\n1,../rec1.wav,10,15,0.9\n"
                                    "2,../rec0.wav,0,5,0.8\n")
    c = TestClient(review.make_app(review.Store(db, str(out / "search.csv"))))
    items = c.get("/api/items").json()["items"]
    assert [(it["name"], it["start_s"], it["score"]) for it in items] == [("rec1.wav", 10.0, 0.9),
                                                                          ("rec0.wav", 0.0, 0.8)]
    assert c.get("/api/audio/0.wav").status_code == 200
    c.post("/api/label", json={"item": 0, "label": "bkcchi"})
    # the label belongs to the window, whichever list it was given from
    plain = TestClient(review.make_app(review.Store(db)))
    assert plain.get("/api/items?page=1&size=5").json()["items"][0]["label"] == "bkcchi"


@pytest.mark.parametrize("case, says", [("missing_db", "does not exist"), ("bad_results", "no file, start_s"),
                                        ("port_in_use", "in use")])
def test_review_refuses_bad_input_in_one_line(db, tmp_path, case, says):
    args = ["--db", db]
    sock = None
    if case == "missing_db":
        args = ["--db", str(tmp_path / "none.sqlite")]
    elif case == "bad_results":
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        args += ["--results", str(tmp_path / "x.csv")]
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        args += ["--port", str(sock.getsockname()[1])]
    try:
        r = subprocess.run([sys.executable, "-m", "birdclef.cli", "review", *args], capture_output=True, text=True,
                           timeout=120)
    finally:
        if sock:
            sock.close()
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _browser():
    """Debian's Chromium and its driver, as .ci/run installs them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromium-driver (Debian packages; .ci/run installs them)")
        pytest.skip("no chromium / chromedriver here: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
              "--mute-audio"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_label_three_windows_in_a_real_browser_and_see_them_after_a_reload(db):
    import uvicorn
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(review.make_app(review.Store(db)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    browser = _browser()
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "article.item")) == 6)
        cards = browser.find_elements(By.CSS_SELECTOR, "article.item")
        # the spectrogram image loads
        wait.until(lambda b: b.execute_script("const i = document.querySelector('.spec'); "
                                              "return i.complete && i.naturalWidth > 0"))
        # play a clip: it loads 5 s of audio and its time runs
        browser.execute_script("document.querySelector('audio.clip').play()")
        wait.until(lambda b: b.execute_script("const a = document.querySelector('audio.clip'); "
                                              "return a.currentTime > 0.2 && Math.abs(a.duration - 5) < 0.01"))
        cards[0].find_element(By.CSS_SELECTOR, "button.not").click()
        cards[1].find_element(By.CSS_SELECTOR, "button.unsure").click()
        code = cards[4].find_element(By.CSS_SELECTOR, "input.code")
        code.send_keys("norcar")
        cards[4].find_element(By.CSS_SELECTOR, "button.save").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "article.item.labelled")) == 3)
        browser.refresh()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "article.item")) == 6)
        labels = [c.find_element(By.CSS_SELECTOR, ".label").text
                  for c in browser.find_elements(By.CSS_SELECTOR, "article.item")]
        assert labels == ["not", "unsure", "", "", "norcar", ""]
        assert browser.find_element(By.ID, "status").text == ""
    finally:
        browser.quit()
        server.should_exit = True
        thread.join(10)
