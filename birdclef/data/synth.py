"""A synthetic dataset in the BirdCLEF-2021 layout: the embedded default.

No download and no account: `birdclef synth --out DIR` writes

    DIR/train_short_audio/<code>/<id>.ogg   recordings of synthetic species
    DIR/train_metadata.csv                  Kaggle's columns
    DIR/train_soundscapes/<id>_<site>_<date>.ogg + train_soundscape_labels.csv
    DIR/test_soundscapes/<id>_<site>_<date>.ogg   (unlabelled)
    DIR/nonbird/<category>/<id>.ogg + metadata.csv  (non-bird sounds, like ESC-50)

Soundscapes are harder than recordings, as in the field: birds call near and far (amplitudes over a
factor of 20), and about a third of the windows hold a dog, an engine, footsteps or rain, with birds or
without, so a model's report shows misses, false alarms and a threshold trade-off.

Species differ by call *structure* (sweep direction and range, harmonic stack,
trill rate, call length and rhythm), never by loudness alone: each recording has
its own gain, background noise colour and signal-to-noise ratio. The same seed
gives the same CSVs and the same decoded audio (OGG container serial numbers are
random in libsndfile, so the bytes of the .ogg files differ).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from birdclef import fileio
from birdclef.audio import write_ogg
from birdclef.config import NOCALL
from birdclef.data.metadata import TRAIN_METADATA_COLUMNS

CALL_KINDS = ("sweep_up", "sweep_down", "harmonic", "trill", "two_note", "warble")
NONBIRD_CATEGORIES = ("background", "engine", "rain", "wind", "dog_bark", "footsteps")
SOUNDSCAPE_EVENTS = ("dog_bark", "engine", "footsteps", "rain")  # non-bird sounds put into soundscape windows
SOUNDSCAPE_EVENT_SHARE = 0.3  # share of soundscape windows with one of them (birds or not)
MAX_CALL_GAP_S = 0.8  # calls come at least this often, so every 2 s chunk of a recording holds a call


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    species: int = 6
    recordings_per_species: int = 8
    soundscapes: int = 2
    test_soundscapes: int = 1
    nonbird_per_category: int = 4
    seed: int = 0
    sample_rate: int = 32000
    min_duration_s: float = 3.0
    max_duration_s: float = 8.0
    soundscape_duration_s: float = 30.0
    nonbird_duration_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class Species:
    code: str
    kind: str
    f0: float          # base frequency, Hz
    span: float        # sweep range, Hz
    call_len: float    # s
    trill_hz: float    # pulse rate inside a call
    harmonics: int
    calls_per_s: float


def species_code(i: int) -> str:
    return f"syn{chr(97 + (i // 26) % 26)}{chr(97 + i % 26)}1"


def make_species(n: int, seed: int) -> list[Species]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 1, i])
        kind = CALL_KINDS[i % len(CALL_KINDS)]
        # Spread base frequencies over the band, and vary the structure per round of kinds.
        f0 = 1500.0 + (i * 1370.0) % 5500.0 + rng.uniform(-150, 150)
        out.append(Species(
            code=species_code(i), kind=kind, f0=f0,
            span=float(rng.uniform(800, 2500)),
            call_len=float(rng.uniform(0.12, 0.5)),
            trill_hz=float(rng.choice([8.0, 14.0, 22.0, 30.0])),
            harmonics=int(1 + (i // len(CALL_KINDS)) % 3 + (kind == "harmonic")),
            calls_per_s=float(rng.uniform(0.8, 2.0)),
        ))
    return out


def _call(sp: Species, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One call of a species, with small natural jitter."""
    length = sp.call_len * rng.uniform(0.9, 1.1)
    t = np.arange(int(length * sr)) / sr
    u = t / max(length, 1e-6)
    jit = rng.uniform(0.96, 1.04)
    f0 = sp.f0 * jit
    if sp.kind == "sweep_up":
        f = f0 + sp.span * u
    elif sp.kind == "sweep_down":
        f = f0 + sp.span * (1 - u)
    elif sp.kind == "harmonic":
        f = f0 + 80 * np.sin(2 * np.pi * 6 * t)
    elif sp.kind == "trill":
        f = f0 + 0.3 * sp.span * np.sign(np.sin(2 * np.pi * sp.trill_hz * t))
    elif sp.kind == "two_note":
        f = np.where(u < 0.5, f0 + sp.span, f0)
    else:  # warble
        f = f0 + 0.5 * sp.span * np.sin(2 * np.pi * 9 * t) * np.sin(np.pi * u)
    phase = 2 * np.pi * np.cumsum(f) / sr
    sig = sum(np.sin((h + 1) * phase) / (h + 1) for h in range(sp.harmonics))
    env = np.sin(np.pi * u) ** 2
    if sp.kind == "trill":
        env = env * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * sp.trill_hz * t)))
    return (sig * env).astype(np.float32)


def _noise(n: int, sr: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if colour == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / sr)
        f[0] = f[1] if len(f) > 1 else 1.0
        if colour == "pink":
            spec /= np.sqrt(f)
        elif colour == "brown":
            spec /= f
        else:  # wind: low-passed with slow gusts
            spec *= 1.0 / (1.0 + (f / 400.0) ** 4)
        x = np.fft.irfft(spec, n).astype(np.float32)
        if colour == "wind":
            t = np.arange(n) / sr
            x *= (1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6))).astype(np.float32)
    return x / (np.std(x) + 1e-9)


def _place_calls(buf: np.ndarray, sp: Species, sr: int, rng: np.random.Generator,
                 start: float, end: float, amp: float) -> None:
    t = start + rng.uniform(0, 0.3)
    while t < end:
        c = _call(sp, sr, rng) * amp * rng.uniform(0.6, 1.0)
        i = int(t * sr)
        j = min(len(buf), i + len(c), int(end * sr))
        if j > i:
            buf[i:j] += c[: j - i]
        t += sp.call_len + min(rng.exponential(1.0 / sp.calls_per_s), MAX_CALL_GAP_S)


def _mix(signal: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    colour = rng.choice(["white", "pink", "brown", "wind"])
    snr_db = rng.uniform(3, 20)
    noise = _noise(len(signal), sr, rng, colour)
    sig_rms = np.sqrt(np.mean(signal ** 2)) + 1e-9
    noise *= sig_rms / (10 ** (snr_db / 20))
    x = signal + noise
    gain = rng.uniform(0.05, 0.7) / (np.max(np.abs(x)) + 1e-9)
    return (x * gain).astype(np.float32)


def recording(sp: Species, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    buf = np.zeros(int(duration * sr), np.float32)
    _place_calls(buf, sp, sr, rng, 0.0, duration, 1.0)
    return _mix(buf, sr, rng)


def nonbird(category: str, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(duration * sr)
    t = np.arange(n) / sr
    if category == "engine":
        f = rng.uniform(40, 120)
        x = sum(np.sin(2 * np.pi * f * (h + 1) * t) / (h + 1) for h in range(6)).astype(np.float32)
        x += 0.3 * _noise(n, sr, rng, "brown")
    elif category == "rain":
        x = 0.2 * _noise(n, sr, rng, "pink")
        drops = rng.integers(0, n, size=int(duration * rng.uniform(50, 200)))
        x[drops] += rng.uniform(2, 6, size=len(drops)).astype(np.float32)
    elif category == "wind":
        x = _noise(n, sr, rng, "wind")
    elif category == "dog_bark":
        x = 0.1 * _noise(n, sr, rng, "pink")
        for s in rng.uniform(0, duration - 0.3, size=rng.integers(2, 6)):
            i, m = int(s * sr), int(0.2 * sr)
            tt = np.arange(m) / sr
            bark = np.sin(2 * np.pi * rng.uniform(300, 700) * tt) * np.exp(-tt * 15)
            x[i:i + m] += (bark + 0.5 * rng.standard_normal(m) * np.exp(-tt * 20)).astype(np.float32)
    elif category == "background":  # field background with no call: the noises bird recordings sit in
        x = _noise(n, sr, rng, str(rng.choice(["white", "pink", "brown", "wind"])))
    else:  # footsteps
        x = 0.05 * _noise(n, sr, rng, "brown")
        step = rng.uniform(0.4, 0.7)
        for s in np.arange(rng.uniform(0, step), duration - 0.1, step):
            i, m = int(s * sr), int(0.05 * sr)
            x[i:i + m] += (rng.standard_normal(m) * np.exp(-np.arange(m) / (0.01 * sr))).astype(np.float32)
    gain = rng.uniform(0.05, 0.7) / (np.max(np.abs(x)) + 1e-9)
    return (x * gain).astype(np.float32)


def generate(out: str, cfg: SynthConfig = SynthConfig(), progress=None) -> dict:
    """Write the dataset under `out`; return a summary dict (also saved as synth.json)."""
    sr = cfg.sample_rate
    species = make_species(cfg.species, cfg.seed)
    rows = []
    counter = 0
    for si, sp in enumerate(species):
        for r in range(cfg.recordings_per_species):
            rng = np.random.default_rng([cfg.seed, 2, si, r])
            dur = float(rng.uniform(cfg.min_duration_s, cfg.max_duration_s))
            counter += 1
            fname = f"XC{100000 + counter}.ogg"
            write_ogg(fileio.join(out, "train_short_audio", sp.code, fname), recording(sp, dur, sr, rng), sr)
            others = [s.code for s in species if s.code != sp.code]
            secondary = [str(rng.choice(others))] if rng.uniform() < 0.1 else []
            rows.append({
                "primary_label": sp.code, "secondary_labels": repr(secondary), "type": "['call']",
                "latitude": f"{rng.uniform(-40, 60):.4f}", "longitude": f"{rng.uniform(-120, 40):.4f}",
                "scientific_name": f"Synthetica {sp.kind.replace('_', '')} {si}",
                "common_name": f"Synthetic {sp.kind.replace('_', ' ')} bird {si}",
                "author": "birdclef synth", "date": f"2021-0{1 + r % 9}-1{r % 10}", "filename": fname,
                "license": "CC0 (generated)", "rating": f"{rng.choice([3.0, 3.5, 4.0, 4.5, 5.0])}",
                "time": f"0{5 + r % 4}:00", "url": f"synthetic://{sp.code}/{fname}",
            })
            if progress:
                progress()
    meta = pd.DataFrame(rows, columns=TRAIN_METADATA_COLUMNS)
    fileio.write_text(fileio.join(out, "train_metadata.csv"), meta.to_csv(index=False))

    label_rows, event_rows = [], []
    for k in range(cfg.soundscapes + cfg.test_soundscapes):
        test = k >= cfg.soundscapes
        rng = np.random.default_rng([cfg.seed, 3, k])
        site = ["SSA", "SSB", "SSC"][k % 3]
        audio_id = 9000 + k
        n_win = int(cfg.soundscape_duration_s // 5)
        buf = np.zeros(int(n_win * 5 * sr), np.float32)
        for w in range(n_win):
            row_id = f"{audio_id}_{site}_{(w + 1) * 5}"
            present = [] if rng.uniform() < 0.35 else list(rng.choice(len(species), size=rng.integers(1, 3), replace=False))
            for si in present:  # near and distant birds: amplitudes over a factor of 20
                _place_calls(buf, species[si], sr, rng, w * 5.0, w * 5.0 + 5.0, float(10 ** rng.uniform(-1.3, 0.0)))
            if rng.uniform() < SOUNDSCAPE_EVENT_SHARE:  # a dog, an engine, steps or rain: not a bird
                cat = str(rng.choice(SOUNDSCAPE_EVENTS))
                length = float(rng.uniform(1.0, 3.0))
                ev = nonbird(cat, length, sr, rng)
                ev *= rng.uniform(0.3, 1.0) / (np.max(np.abs(ev)) + 1e-9)
                i = int((w * 5.0 + rng.uniform(0.0, 5.0 - length)) * sr)
                buf[i:i + len(ev)] += ev[: len(buf) - i]
                if not test:
                    event_rows.append(row_id)
            if not test:
                birds = " ".join(sorted(species[si].code for si in present)) or NOCALL
                label_rows.append({"row_id": row_id, "site": site,
                                   "audio_id": str(audio_id), "seconds": str((w + 1) * 5), "birds": birds})
        folder = "test_soundscapes" if test else "train_soundscapes"
        write_ogg(fileio.join(out, folder, f"{audio_id}_{site}_2021060{k % 9 + 1}.ogg"), _mix(buf, sr, rng), sr)
        if progress:
            progress()
    fileio.write_text(fileio.join(out, "train_soundscape_labels.csv"),
                      pd.DataFrame(label_rows, columns=["row_id", "site", "audio_id", "seconds", "birds"]).to_csv(index=False))

    nb_rows = []
    for ci, cat in enumerate(NONBIRD_CATEGORIES):
        for j in range(cfg.nonbird_per_category):
            rng = np.random.default_rng([cfg.seed, 4, ci, j])
            fname = f"{cat}/{cat}_{j + 1}.ogg"
            write_ogg(fileio.join(out, "nonbird", fname), nonbird(cat, cfg.nonbird_duration_s, sr, rng), sr)
            nb_rows.append({"filename": fname, "category": cat, "source": "birdclef synth", "license": "CC0 (generated)"})
            if progress:
                progress()
    fileio.write_text(fileio.join(out, "nonbird", "metadata.csv"), pd.DataFrame(nb_rows).to_csv(index=False))

    summary = {
        "config": dataclasses.asdict(cfg),
        "species": [dataclasses.asdict(s) for s in species],
        "recordings": len(rows), "soundscapes": cfg.soundscapes, "test_soundscapes": cfg.test_soundscapes,
        "soundscape_windows": len(label_rows),
        "nocall_windows": sum(r["birds"] == NOCALL for r in label_rows),
        "nonbird_event_windows": event_rows,  # row_ids of labelled windows with a dog, engine, steps or rain
        "nonbird_clips": len(nb_rows),
    }
    fileio.write_text(fileio.join(out, "synth.json"), json.dumps(summary, indent=2))
    return summary


def total_files(cfg: SynthConfig) -> int:
    return (cfg.species * cfg.recordings_per_species + cfg.soundscapes + cfg.test_soundscapes
            + len(NONBIRD_CATEGORIES) * cfg.nonbird_per_category)
