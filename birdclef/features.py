"""THE feature function: 2 s chunks of 32 kHz audio -> log-mel spectrograms.

Transform (stage 1), training-time checks and predict all call `chunk_starts`
and `logmel` from here, so training and inference see identical inputs. The
mel is computed with `tf.signal` ops, so the same function also runs inside an
exported SavedModel.

Chunking rule (`chunk_starts`): chunks of `chunk_s` seconds start every `hop_s`
seconds while they fit; if audio remains after the last such chunk, one more
chunk ending exactly at the end of the recording is added (it overlaps its
neighbour by more than the usual 1 s), so no audio is dropped and nothing is
padded. A recording shorter than one chunk gives one chunk, zero-padded at the
end.
"""
from __future__ import annotations

import functools

import numpy as np

from birdclef.config import DEFAULT_FEATURES, FeatureConfig


def quiet_tensorflow_import() -> None:
    """Import TensorFlow once with its start-up lines on stderr ("All log messages before
    absl::InitializeLog()...", "Could not find cuda drivers...") silenced: they are written by C++ code
    at import, before any Python logging setting applies, so the process's stderr (fd 2) points to
    /dev/null for the import alone. BIRDCLEF_VERBOSE=1 (`--verbose`) keeps them. An import that
    fails is retried with stderr back, so its error is seen."""
    import os
    import sys

    if "tensorflow" in sys.modules:
        return
    if os.environ.get("BIRDCLEF_VERBOSE"):
        import_tensorflow()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import_tensorflow()
            except Exception:  # noqa: BLE001 - shown again below, with stderr back
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import_tensorflow()


def import_tensorflow(one_core: bool = False):
    """`import tensorflow` for a process that computes features or serves a model (Beam workers, predict).

    `import tensorflow` also imports, eagerly, modules such a process never uses:
    Keras 3's optimizers (~1.8 CPU-s of a ~5.9 CPU-s import, measured) and, through
    Keras' scikit-learn wrappers, sklearn and scipy (~1.4 CPU-s). TF wraps the Keras
    import in `except ImportError` and reaches Keras lazily through `tf.keras`, so both
    are hidden during this one import only: they stay importable, and `tf.keras` or
    `import keras` later loads Keras as usual. A process that already imported any of
    them gets the plain import.

    one_core: also limit TF (and OpenBLAS) to one thread, as in a Beam worker process whose
    parallelism comes from its sibling workers; a no-op once TF has initialised."""
    import os
    import sys

    hidden = ("keras", "sklearn")
    if "tensorflow" in sys.modules or any(m in sys.modules for m in hidden):
        import tensorflow as tf
    else:
        for m in hidden:
            sys.modules[m] = None  # `import m` raises ImportError while this is set
        try:
            import tensorflow as tf
        finally:
            for m in hidden:
                del sys.modules[m]
    if one_core:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TF already initialised in this process
    return tf


def chunk_samples(cfg: FeatureConfig = DEFAULT_FEATURES) -> int:
    return int(round(cfg.chunk_s * cfg.sample_rate))


def hop_samples(cfg: FeatureConfig = DEFAULT_FEATURES) -> int:
    """Samples between the starts of consecutive chunks."""
    return int(round(cfg.hop_s * cfg.sample_rate))


def frames_per_chunk(cfg: FeatureConfig = DEFAULT_FEATURES) -> int:
    return -(-chunk_samples(cfg) // cfg.hop_length)  # stft with pad_end=True


def mel_shape(cfg: FeatureConfig = DEFAULT_FEATURES) -> tuple[int, int]:
    return frames_per_chunk(cfg), cfg.n_mels


def chunk_starts(n_samples: int, cfg: FeatureConfig = DEFAULT_FEATURES) -> list[int]:
    """Start sample of every chunk of a recording of n_samples (see module doc)."""
    size = chunk_samples(cfg)
    hop = hop_samples(cfg)
    if n_samples <= size:
        return [0]
    starts = list(range(0, n_samples - size + 1, hop))
    if starts[-1] + size < n_samples:
        starts.append(n_samples - size)
    return starts


def cut_chunks(wave: np.ndarray, cfg: FeatureConfig = DEFAULT_FEATURES, offset: int = 0) -> np.ndarray:
    """[n_chunks, chunk_samples] float32 array of the chunks of `wave`."""
    size = chunk_samples(cfg)
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < size:
        wave = np.pad(wave, (0, size - len(wave)))
    starts = chunk_starts(len(wave), cfg)
    return np.stack([wave[s:s + size] for s in starts]) if starts else np.zeros((0, size), np.float32)


@functools.lru_cache(maxsize=8)
def _mel_matrix(cfg: FeatureConfig) -> np.ndarray:
    """The mel filterbank as a numpy array (computed eagerly, so it is safe to reuse in any graph)."""
    import tensorflow as tf

    with tf.init_scope():
        return tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=cfg.n_mels, num_spectrogram_bins=cfg.n_fft // 2 + 1, sample_rate=cfg.sample_rate,
            lower_edge_hertz=cfg.fmin, upper_edge_hertz=cfg.fmax).numpy()


def _frames_logmel_tf(signal, cfg: FeatureConfig, pad_end: bool):
    """TF ops: log-mel of the STFT frames of signal(s) [..., samples] -> [..., frames, n_mels].

    Log of mel power with a floor of 1e-6 (about -60 dB re full scale)."""
    import tensorflow as tf

    stft = tf.signal.stft(signal, frame_length=cfg.n_fft, frame_step=cfg.hop_length,
                          fft_length=cfg.n_fft, window_fn=tf.signal.hann_window, pad_end=pad_end)
    # |z|^2 as re^2 + im^2: tf.math.abs on complex takes a square root (hypot) only to square it
    # again; this is the same value to float rounding and cut the whole log-mel by about 30 %.
    power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
    return tf.math.log(tf.tensordot(power, tf.constant(_mel_matrix(cfg)), 1) + 1e-6)


def logmel_tf(chunks, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF ops: [batch, chunk_samples] float32 -> [batch, frames, n_mels] log-mel (frames padded past the end)."""
    return _frames_logmel_tf(chunks, cfg, pad_end=True)


@functools.lru_cache(maxsize=8)
def _compiled(cfg: FeatureConfig):
    import tensorflow as tf

    return tf.function(lambda x: logmel_tf(x, cfg),
                       input_signature=[tf.TensorSpec([None, chunk_samples(cfg)], tf.float32)])


def _concat_mels(parts: list[np.ndarray], cfg: FeatureConfig) -> np.ndarray:
    if not parts:
        return np.zeros((0, *mel_shape(cfg)), np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def logmel(chunks: np.ndarray, cfg: FeatureConfig = DEFAULT_FEATURES, batch: int = 64) -> np.ndarray:
    """numpy in, numpy out: [n, chunk_samples] -> [n, frames, n_mels] float32."""
    fn = _compiled(cfg)
    out = [fn(chunks[i:i + batch]).numpy() for i in range(0, len(chunks), batch)]
    return _concat_mels(out, cfg)


def _tail_start(cfg: FeatureConfig) -> int:
    """Sample offset of the first frame that runs past the chunk end (padded by pad_end)."""
    full_frames = (chunk_samples(cfg) - cfg.n_fft) // cfg.hop_length + 1
    return full_frames * cfg.hop_length


def shares_frames(cfg: FeatureConfig = DEFAULT_FEATURES) -> bool:
    """True when chunks a hop apart share STFT frames (the chunk hop is a whole number of frames)."""
    hop = hop_samples(cfg)
    return hop % cfg.hop_length == 0 and chunk_samples(cfg) >= cfg.n_fft and hop <= chunk_samples(cfg)


def logmel_run_tf(segment, n_chunks, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF ops: `logmel_tf` of n_chunks chunks that start a hop apart, from the audio they span.

    `segment` [(n_chunks - 1) * hop + chunk_samples] holds chunk i at [i * hop, i * hop + chunk).
    Chunk i's frames that lie wholly inside it are frames of the segment's own STFT, so each
    is computed once instead of twice (chunks overlap by half); only the last few frames of
    each chunk, which `logmel_tf` pads with zeros past the chunk end, are computed per chunk.
    Same result as `logmel_tf` on the cut chunks, to float rounding (tested)."""
    import tensorflow as tf

    hop = hop_samples(cfg)
    size, tail = chunk_samples(cfg), _tail_start(cfg)
    full_frames = tail // cfg.hop_length
    starts = tf.range(n_chunks) * hop
    body = _frames_logmel_tf(segment, cfg, pad_end=False)
    body = tf.gather(body, (starts // cfg.hop_length)[:, None] + tf.range(full_frames)[None, :])
    tails = tf.gather(segment, (starts + tail)[:, None] + tf.range(size - tail)[None, :])
    return tf.concat([body, _frames_logmel_tf(tails, cfg, pad_end=True)], axis=1)


def logmel_wave_tf(wave, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF ops: `logmel_tf` of every chunk of a waveform (the rule of `chunk_tf`), and the chunk starts.

    Chunks a hop apart go through `logmel_run_tf` (shared frames computed once); the end-aligned
    last chunk, if any, through `logmel_tf`. Used by exported models, so predict gets the same speed-up."""
    import tensorflow as tf

    if not shares_frames(cfg):
        chunks, starts = chunk_tf(wave, cfg)
        return logmel_tf(chunks, cfg), starts
    size = chunk_samples(cfg)
    wave, total, regular_starts, has_last = _chunk_starts_tf(wave, cfg)
    n_regular = tf.shape(regular_starts)[0]
    regular = logmel_run_tf(wave[:regular_starts[-1] + size], n_regular, cfg)
    last = tf.cond(has_last, lambda: logmel_tf(wave[None, total - size:total], cfg),
                   lambda: tf.zeros([0, *mel_shape(cfg)], tf.float32))
    return tf.concat([regular, last], 0), _with_last(regular_starts, has_last, total, cfg)


@functools.lru_cache(maxsize=8)
def _compiled_run(cfg: FeatureConfig):
    import tensorflow as tf

    return tf.function(lambda x, n: logmel_run_tf(x, n, cfg),
                       input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])


def logmel_chunks(starts: list[int], chunks: list[np.ndarray], cfg: FeatureConfig = DEFAULT_FEATURES) -> np.ndarray:
    """numpy: log-mels of chunks given with their start samples; equal to `logmel(np.stack(chunks))`.

    Runs of chunks exactly a hop apart (all but a recording's end-aligned last chunk)
    go through `logmel_run_tf`, which computes shared frames once."""
    hop = hop_samples(cfg)
    out, i = [], 0
    fast = shares_frames(cfg)
    while i < len(chunks):
        j = i + 1
        while fast and j < len(chunks) and starts[j] == starts[j - 1] + hop:
            j += 1
        if j - i > 1:
            segment = np.concatenate([chunks[i], *(c[-hop:] for c in chunks[i + 1:j])])
            out.append(_compiled_run(cfg)(segment, np.int32(j - i)).numpy())
        else:
            out.append(logmel(np.stack(chunks[i:j]), cfg))
        i = j
    return _concat_mels(out, cfg)


def stream_chunks(blocks, cfg: FeatureConfig = DEFAULT_FEATURES):
    """Yield (start_sample, chunk) from an iterator of audio blocks, by the same
    rule as `chunk_starts`, holding at most about one block plus one chunk."""
    size = chunk_samples(cfg)
    hop = hop_samples(cfg)
    buf = np.zeros(0, np.float32)
    buf_start = 0       # absolute index of buf[0]
    next_start = 0
    last = None
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, np.float32)
        while next_start + size <= buf_start + len(buf):
            s = next_start - buf_start
            yield next_start, buf[s:s + size]
            last = next_start
            next_start += hop
        drop = max(0, min(next_start - buf_start, len(buf) - size))
        buf, buf_start = buf[drop:], buf_start + drop
    total = buf_start + len(buf)
    if last is None:
        if total:
            yield 0, np.pad(buf, (0, size - len(buf)))
    elif last + size < total:
        yield total - size, buf[len(buf) - size:]


def chunk_tf(wave, cfg: FeatureConfig = DEFAULT_FEATURES):
    """TF ops version of `cut_chunks` (same rule as `chunk_starts`), for exported models.

    Returns (chunks [n, chunk_samples], start sample of each chunk [n])."""
    import tensorflow as tf

    size = chunk_samples(cfg)
    wave, total, regular_starts, has_last = _chunk_starts_tf(wave, cfg)
    starts = _with_last(regular_starts, has_last, total, cfg)
    chunks = tf.gather(wave, starts[:, None] + tf.range(size)[None, :])
    return chunks, starts


def _chunk_starts_tf(wave, cfg: FeatureConfig):
    """TF ops, the rule of `chunk_starts`: (wave zero-padded to one chunk if shorter, its length,
    starts of the chunks a hop apart, whether an end-aligned last chunk follows them)."""
    import tensorflow as tf

    size = chunk_samples(cfg)
    n = tf.shape(wave)[0]
    wave = tf.pad(wave, [[0, tf.maximum(0, size - n)]])
    total = tf.maximum(n, size)
    starts = tf.range((total - size) // hop_samples(cfg) + 1) * hop_samples(cfg)
    return wave, total, starts, starts[-1] + size < total


def _with_last(regular_starts, has_last, total, cfg: FeatureConfig):
    import tensorflow as tf

    return tf.cond(has_last, lambda: tf.concat([regular_starts, [total - chunk_samples(cfg)]], 0),
                   lambda: regular_starts)
