"""Feature and audio parameters, in one place.

Every stage (transform, train, predict) reads these from one frozen dataclass so
that training and inference see identical inputs.
"""
from __future__ import annotations

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """How audio is decoded and checked.

    sample_rate:    every recording is resampled to this rate, mono float32.
    min_duration_s: recordings shorter than this are rejected as `too_short`.
                    Real clips of 0.35 s exist in the data, so the default
                    stays below that; clips shorter than one chunk are padded
                    by the chunker, not rejected here.
    block_s:        long files are decoded and resampled in blocks of this many
                    seconds, so memory use stays bounded while streaming.
    """

    sample_rate: int = 32000
    min_duration_s: float = 0.25
    block_s: float = 60.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Chunking and log-mel parameters (see DESIGN.md defaults)."""

    sample_rate: int = 32000
    chunk_s: float = 2.0
    hop_s: float = 1.0
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 128
    fmin: float = 50.0
    fmax: float = 14000.0
    window_s: float = 5.0  # BirdCLEF-2021 scoring window

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# Audio files birdclef picks up from folders (soundscapes, predict inputs); libsndfile reads them all.
AUDIO_SUFFIXES = (".ogg", ".oga", ".mp3", ".flac", ".wav", ".aif", ".aiff")

DEFAULT_AUDIO = AudioConfig()
DEFAULT_FEATURES = FeatureConfig()
NOCALL = "nocall"
PRESENCE_THRESHOLD = 0.5  # bird presence at which a window may be labelled with birds (predict --presence-threshold)


# `birdclef train --model` choices; birdclef.models.REGISTRY builds them (kept equal by a test). Listed here
# so the command line checks a name without importing TensorFlow.
ARCHITECTURES = ("dilated_cnn", "resnet", "mobilenet", "crnn", "floor_dilated", "floor_attention", "stem_dilated")
