import csv

import numpy as np
import pytest
import soundfile as sf

from birdclef import audio
from birdclef.config import AudioConfig

CORRUPT_EXPECTED = {
    "empty.ogg": "empty",
    "truncated.ogg": "truncated",
    "not_audio.ogg": "not_audio",
    "too_short_0.2s.wav": "too_short",
    "silent_10s.wav": "silent",
}
CORRUPT_READABLE = {"stereo_48k.wav": 10.0, "pcm_u8.wav": 10.0, "clipped_dc_offset.wav": 10.0}


@pytest.mark.parametrize("name,reason", sorted(CORRUPT_EXPECTED.items()))
def test_corrupt_fixture_gives_reason(shared_data, name, reason):
    path = shared_data / "corrupt" / name
    with pytest.raises(audio.AudioError) as ei:
        audio.load(str(path))
    assert ei.value.reason == reason
    assert str(path) in str(ei.value) and "fix:" in str(ei.value)


@pytest.mark.parametrize("name,seconds", sorted(CORRUPT_READABLE.items()))
def test_awkward_but_readable_fixture(shared_data, name, seconds):
    x = audio.load(str(shared_data / "corrupt" / name))
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / 32000 - seconds) < 0.01
    assert np.abs(x).max() > 0.01


def test_missing_file_reason(tmp_path):
    with pytest.raises(audio.AudioError) as ei:
        audio.probe(str(tmp_path / "nope.ogg"))
    assert ei.value.reason == "missing"


def test_silent_allowed_when_asked(shared_data):
    x = audio.load(str(shared_data / "corrupt" / "silent_10s.wav"), allow_silent=True)
    assert len(x) == 320000 and not x.any()


def test_min_duration_is_configurable(shared_data):
    x = audio.load(str(shared_data / "corrupt" / "too_short_0.2s.wav"), AudioConfig(min_duration_s=0.1))
    assert len(x) == 6400


def test_every_manifest_file_decodes_to_listed_duration(shared_data):
    rows = list(csv.DictReader(open(shared_data / "MANIFEST.tsv"), delimiter="\t"))
    assert len(rows) > 200
    for r in rows:
        path = str(shared_data / r["path"])
        listed = float(r["duration_s"])
        assert abs(audio.duration(path) - listed) < 0.01, path
        x = audio.load(path)
        assert abs(len(x) / 32000 - listed) < 0.01, path


@pytest.mark.parametrize("fmt,subtype,sr,channels", [
    ("WAV", "PCM_U8", 8000, 1), ("WAV", "PCM_16", 44100, 2), ("WAV", "PCM_24", 48000, 1),
    ("WAV", "PCM_32", 22050, 3), ("WAV", "FLOAT", 16000, 1), ("FLAC", "PCM_16", 48000, 2),
    ("OGG", "VORBIS", 44100, 2), ("MP3", "MPEG_LAYER_III", 44100, 1),
])
def test_formats_decode_to_mono_at_target_rate(tmp_path, fmt, subtype, sr, channels):
    t = np.arange(int(1.5 * sr)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    x = audio.load(str(path))
    assert x.dtype == np.float32 and x.ndim == 1
    # MP3 encoders add priming samples; everything else keeps the exact length.
    tol = 0.06 if fmt == "MP3" else 0.001
    assert abs(len(x) / 32000 - 1.5) <= tol
    # the 1 kHz tone survives downmix and resampling
    seg = x[4000:36000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(seg))) * 32000 / len(seg)
    assert abs(peak_hz - 1000) < 5


@pytest.mark.parametrize("fmt,channels", [("WAV", 1), ("FLAC", 2)])
def test_pcm16_decodes_to_exactly_libsndfile_floats(tmp_path, fmt, channels):
    """16-bit PCM is read as integers and scaled by us (faster): same samples as libsndfile's floats."""
    rng = np.random.default_rng(1)
    ints = rng.integers(-32768, 32768, size=(32000 * 3, channels), dtype=np.int16)
    ints[0], ints[1], ints[2:10] = -32768, 32767, 0  # the extremes and digital zero
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), ints, 32000, format=fmt, subtype="PCM_16")
    ref = sf.read(str(path), dtype="float32", always_2d=True)[0]
    ref = ref[:, 0] if channels == 1 else ref.mean(axis=1, dtype=np.float32)
    got = np.concatenate(list(audio.stream(str(path), AudioConfig(block_s=1.0))))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_streaming_blocks_match_one_shot_and_stay_bounded(tmp_path):
    sr = 44100
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(sr * 7)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(str(path), x, sr)
    cfg = AudioConfig(block_s=1.0)
    blocks = list(audio.stream(str(path), cfg))
    assert len(blocks) >= 7
    assert max(len(b) for b in blocks) <= 1.1 * 32000
    streamed = np.concatenate(blocks)
    import soxr

    ref = soxr.resample(sf.read(str(path), dtype="float32")[0], sr, 32000)
    assert len(streamed) == len(ref)
    # same signal up to resampler edge effects at block joins
    assert np.corrcoef(streamed, ref)[0, 1] > 0.999


def test_remote_filesystem_path(shared_data):
    import fsspec

    src = shared_data / "birdclef-mini" / "train_short_audio" / "barowl" / "MBarnowl_1.ogg"
    with fsspec.open("memory://bucket/barowl.ogg", "wb") as f:
        f.write(src.read_bytes())
    x = audio.load("memory://bucket/barowl.ogg")
    assert np.array_equal(x, audio.load(str(src)))
    assert abs(audio.duration("memory://bucket/barowl.ogg") - 1.2655) < 0.01
    with pytest.raises(audio.AudioError) as ei:
        audio.load("memory://bucket/missing.ogg")
    assert ei.value.reason == "missing"


def test_write_ogg_roundtrip(tmp_path):
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000 * 3) / 32000)).astype(np.float32)
    audio.write_ogg(str(tmp_path / "a.ogg"), x, 32000, block_frames=10000)
    y = audio.load(str(tmp_path / "a.ogg"))
    assert len(y) == len(x)
    assert np.corrcoef(x, y)[0, 1] > 0.99
