"""Read-ahead of audio blocks (`birdclef.prefetch`): the same blocks, errors where they happened, and the
decoding of the next block running while the caller works on the current one."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from birdclef import audio
from birdclef.config import AudioConfig
from birdclef.prefetch import prefetch


def test_prefetch_gives_the_same_blocks_as_the_stream(shared_data):
    path = next((shared_data / "birdclef-mini" / "train_soundscapes").glob("*.ogg"))
    cfg = AudioConfig(block_s=5.0)  # several blocks from one soundscape
    direct = list(audio.stream(str(path), cfg, allow_silent=True))
    ahead = list(prefetch(audio.stream(str(path), cfg, allow_silent=True)))
    assert len(direct) == len(ahead) > 1
    assert all(np.array_equal(a, b) for a, b in zip(direct, ahead))


def test_a_bad_file_raises_its_audio_error_through_the_read_ahead(shared_data):
    bad = shared_data / "corrupt" / "truncated.ogg"
    with pytest.raises(audio.AudioError) as direct:
        list(audio.stream(str(bad)))
    with pytest.raises(audio.AudioError) as ahead:
        list(prefetch(audio.stream(str(bad))))
    assert ahead.value.reason == direct.value.reason == "truncated"


def test_the_next_item_is_made_while_the_caller_works_on_this_one():
    made = []

    def slow_source():
        for i in range(4):
            time.sleep(0.05)
            made.append((i, time.perf_counter()))
            yield i

    used = []
    for i in prefetch(slow_source()):
        used.append((i, time.perf_counter()))
        time.sleep(0.2)  # the caller's work: the source is not waiting for it
    assert [i for i, _ in used] == [0, 1, 2, 3]
    # item 1 was ready before the caller finished item 0 (0.2 s of work against 0.05 s to make it)
    assert made[1][1] < used[0][1] + 0.2


def test_a_caller_that_stops_early_leaves_no_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    for i in prefetch(source()):
        if i == 3:
            break
    assert closed.wait(2)
    assert not any(t.name == "birdclef-prefetch" for t in threading.enumerate())


def test_predict_decodes_the_next_block_while_the_model_scores_this_one(monkeypatch):
    """One long file: block k+1 comes out of the decoder before the model has finished block k."""
    from birdclef import predict

    sr, block = 32000, 32000 * 60
    events = []

    def stream(path, cfg=None, **kw):
        for k in range(3):
            time.sleep(0.05)  # decoding and resampling
            events.append(("decoded", k, time.perf_counter()))
            yield np.zeros(block, np.float32)

    def window_scores(serve, wave, cfg=None, n_real=None):
        start = time.perf_counter()
        time.sleep(0.2)  # the model
        events.append(("scored", start, time.perf_counter()))
        n = len(wave) // (5 * sr)
        return np.zeros((n, 2), np.float32), np.zeros(n, np.float32)

    monkeypatch.setattr(audio, "stream", stream)
    monkeypatch.setattr(predict, "window_scores", window_scores)
    df = predict.predict_file(None, ["a", "nocall"], "long.ogg")
    assert len(df) == 36  # 3 minutes in 5 s windows
    decoded = {k: t for kind, k, t in events if kind == "decoded"}
    first_scored_end = next(t for kind, _, t in events if kind == "scored")
    assert decoded[1] < first_scored_end  # read ahead, not after the model was done
