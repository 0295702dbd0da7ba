"""Decode, resample and check audio.

Any format libsndfile reads (ogg/vorbis, mp3, flac, wav at 8/16/24/32-bit int
or float, any rate, any channel count) becomes float32 mono at the configured
rate (32 kHz by default). Long files are decoded and resampled block by block
(`stream`), so memory stays bounded. Every failure is one `AudioError` carrying
the path, a short machine reason and a sentence a person can act on.
"""
from __future__ import annotations

import contextlib
import errno
import os
import dataclasses
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from birdclef import config, fileio
from birdclef.config import DEFAULT_AUDIO, AudioConfig

AUDIO_SUFFIXES = config.AUDIO_SUFFIXES  # what folders are scanned for; all decode here


# reason -> (what happened, what to do about it)
REASONS = {
    "missing": ("file does not exist", "check the path, or remove the row that names it from the metadata CSV"),
    "empty": ("file is empty (0 bytes)", "re-download or re-export the recording"),
    "truncated": ("file is cut short or its header is malformed", "re-download the file; an interrupted copy leaves such files"),
    "not_audio": ("file is not an audio format libsndfile can read", "convert it to ogg/flac/wav/mp3, or remove it from the dataset"),
    "too_short": ("recording is shorter than the minimum duration", "drop it, or lower --min-duration if such short clips are wanted"),
    "non_finite": ("recording holds NaN or infinite samples (a float file written by a broken tool)",
                   "re-export the recording as 16-bit PCM, or repair the float samples (e.g. sox in.wav -b 16 out.wav)"),
    "silent": ("recording is all silence (digital zeros or a constant)", "check the recorder/export; the file carries no signal"),
    "permission_denied": ("the file cannot be read with this user's permissions",
                          "give the user running birdclef read access (e.g. chmod a+r FILE), or copy the file"),
    "unreadable": ("file could not be decoded", "re-encode the file with a standard tool (ffmpeg, sox)"),
}

# Container signatures: a file that starts like audio but does not open is damaged.
_MAGIC = (b"OggS", b"RIFF", b"RF64", b"fLaC", b"ID3", b"FORM", b"caff", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")
# A constant signal whose peak-to-peak range is under one 16-bit step is silence.
_SILENCE_PTP = 2.0 / 32768.0
# Decoded length may fall short of the header by codec padding; more is truncation.
_TRUNCATION_TOLERANCE_S = 0.01


class AudioError(Exception):
    """A recording that cannot be used, with the reason and a fix."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        what, fix = REASONS.get(reason, (reason, ""))
        msg = f"{self.path}: {reason}: {what}"
        if detail:
            msg += f" ({detail})"
        if fix:
            msg += f"; fix: {fix}"
        super().__init__(msg)

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "detail": self.detail, "message": str(self)}


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    path: str
    samplerate: int
    channels: int
    frames: int
    subtype: str
    format: str

    @property
    def duration(self) -> float:
        return self.frames / float(self.samplerate) if self.samplerate else 0.0


@contextlib.contextmanager
def _open(path: str):
    """Open a SoundFile on a local path or a remote object, with reasons for failures."""
    path = str(path)
    try:
        if not fileio.exists(path):
            raise AudioError(path, "missing")
        if fileio.size(path) == 0:
            raise AudioError(path, "empty")
    except AudioError:
        raise
    except Exception as e:  # a remote store that cannot be reached
        raise AudioError(path, "missing", f"{type(e).__name__}: {e}") from e
    with contextlib.ExitStack() as stack:
        src = path
        try:
            if fileio.is_remote(path):
                src = stack.enter_context(fileio.open_file(path, "rb"))
            elif not os.access(path, os.R_OK):
                raise PermissionError(errno.EACCES, "Permission denied", path)
        except PermissionError as e:
            raise AudioError(path, "permission_denied", str(e)) from e
        try:
            snd = stack.enter_context(sf.SoundFile(src))
        except sf.LibsndfileError as e:
            raise AudioError(path, _classify_open_error(path), str(e).split(": ", 1)[-1]) from e
        except (RuntimeError, TypeError, ValueError) as e:
            raise AudioError(path, _classify_open_error(path), str(e)) from e
        yield snd


def _classify_open_error(path: str) -> str:
    try:
        with fileio.open_file(path, "rb") as f:
            head = f.read(16)
    except PermissionError:
        return "permission_denied"
    except Exception:
        return "unreadable"
    return "truncated" if head.startswith(_MAGIC) else "not_audio"


def probe(path: str) -> AudioInfo:
    """Header information without decoding the audio."""
    with _open(path) as snd:
        return AudioInfo(str(path), int(snd.samplerate), int(snd.channels), int(snd.frames), snd.subtype, snd.format)


def _check_header(path: str, frames: int, samplerate: int, cfg: AudioConfig) -> None:
    if frames == 0:
        raise AudioError(path, "empty", "header announces 0 frames")
    if frames / samplerate < cfg.min_duration_s:
        raise AudioError(path, "too_short", f"{frames / samplerate:.3f} s < {cfg.min_duration_s} s")


def probe_usable(path: str, cfg: AudioConfig = DEFAULT_AUDIO) -> AudioInfo:
    """`probe`, and raise for what the header already shows unusable (no frames, too short)."""
    info = probe(path)
    _check_header(info.path, info.frames, info.samplerate, cfg)
    return info


def duration(path: str) -> float:
    """Duration in seconds, from the header."""
    return probe(path).duration


# Subtypes decoded as integers and scaled here: libsndfile's own float conversion of
# 16-bit PCM (WAV, FLAC; what most field recorders write) divides by 32768 exactly as
# below, so the samples are identical (tested), and decoding runs about 40 % faster.
_INT_READ = {"PCM_16": "int16"}  # subtype -> dtype read
_INT_SCALE = {np.dtype("int16"): np.float32(1.0 / 32768.0)}


def _to_mono(block: np.ndarray) -> np.ndarray:
    scale = _INT_SCALE.get(block.dtype)
    if scale is not None:
        block = block.astype(np.float32) * scale
    if block.ndim == 2:
        block = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(block, dtype=np.float32)


def stream(path: str, cfg: AudioConfig = DEFAULT_AUDIO, *, check: bool = True,
           allow_silent: bool = False) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks at cfg.sample_rate, about cfg.block_s seconds each.

    With check=True (default) a too-short recording raises before decoding and
    truncation / all-silence raise at the end of the stream.
    """
    path = str(path)
    with _open(path) as snd:
        sr_in = int(snd.samplerate)
        expected = int(snd.frames)
        _check_header(path, expected, sr_in, cfg if check else AudioConfig(min_duration_s=0.0))
        block = max(1, int(cfg.block_s * sr_in))
        dtype = _INT_READ.get(snd.subtype, "float32")
        resampler = None
        if sr_in != cfg.sample_rate:
            resampler = soxr.ResampleStream(sr_in, cfg.sample_rate, 1, dtype="float32")
        got = 0
        bad = 0  # non-finite samples: they would turn every feature and the training loss into NaN
        lo, hi = np.inf, -np.inf
        while True:
            try:
                x = snd.read(block, dtype=dtype, always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(path, "truncated", f"decoding stopped after {got / sr_in:.2f} s: {e}") from e
            n = len(x)
            got += n
            last = n < block or got >= expected
            if n:
                x = _to_mono(x)
                finite = np.isfinite(x)
                if not finite.all():
                    bad += int((~finite).sum())
                    x = np.where(finite, x, np.float32(0.0))  # never handed on; the file is refused below
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
            if resampler is not None:
                x = resampler.resample_chunk(x if n else np.zeros(0, np.float32), last=last)
            if len(x):
                yield x
            if last:
                break
    if got == 0:
        raise AudioError(path, "truncated", "no audio frames could be decoded")
    if bad:
        raise AudioError(path, "non_finite", f"{bad} of {got} samples are NaN or infinite")
    if check and (expected - got) / sr_in > _TRUNCATION_TOLERANCE_S:
        raise AudioError(path, "truncated", f"decoded {got / sr_in:.2f} s of {expected / sr_in:.2f} s announced")
    if check and not allow_silent and hi - lo <= _SILENCE_PTP:
        raise AudioError(path, "silent")


def load(path: str, cfg: AudioConfig = DEFAULT_AUDIO, *, check: bool = True,
         allow_silent: bool = False) -> np.ndarray:
    """Whole recording as float32 mono at cfg.sample_rate."""
    blocks = list(stream(path, cfg, check=check, allow_silent=allow_silent))
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def segment(path: str, start_s: float, end_s: float, cfg: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """float32 mono at cfg.sample_rate of [start_s, end_s) of a recording, decoding only that span
    (a seek, where the format allows it): for listening to one window of a long recording."""
    path = str(path)
    with _open(path) as snd:
        sr_in = int(snd.samplerate)
        a = max(0, int(round(start_s * sr_in)))
        n = max(0, int(round(end_s * sr_in)) - a)
        try:
            if snd.seekable():
                snd.seek(min(a, snd.frames))
            else:
                snd.read(a, dtype="float32", always_2d=True)
            x = snd.read(n, dtype=_INT_READ.get(snd.subtype, "float32"), always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(path, "truncated", f"reading {start_s:.2f}-{end_s:.2f} s: {e}") from e
    x = np.nan_to_num(_to_mono(x), nan=0.0, posinf=0.0, neginf=0.0)
    if sr_in != cfg.sample_rate and len(x):
        x = soxr.resample(x, sr_in, cfg.sample_rate).astype(np.float32)
    return x


def write_ogg(path: str, audio: np.ndarray, sample_rate: int, block_frames: int = 1 << 20) -> None:
    """Write float audio as OGG Vorbis, in blocks (libsndfile can crash on
    very large single OGG writes), to a local or remote path."""
    import io

    buf = io.BytesIO()
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    with sf.SoundFile(buf, "w", samplerate=sample_rate, channels=1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(audio), block_frames):
            f.write(audio[start:start + block_frames])
    fileio.write_bytes(path, buf.getvalue())
