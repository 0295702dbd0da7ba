"""Check a BirdCLEF-layout dataset: CSVs, then every audio file."""
from __future__ import annotations

import dataclasses

from birdclef import audio, fileio
from birdclef.config import DEFAULT_AUDIO, AudioConfig
from birdclef.data import metadata


@dataclasses.dataclass
class Report:
    checked: int = 0
    ok: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    quarantined: list[dict] = dataclasses.field(default_factory=list)  # AudioError.to_dict()
    by_kind: dict = dataclasses.field(default_factory=dict)  # kind -> [usable, checked]
    unlisted: int = 0  # audio files under train_short_audio/ that no metadata row names (not used)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {ok}/{n}" for k, (ok, n) in self.by_kind.items())
        extra = f"; {self.unlisted} file(s) in train_short_audio/ not in the metadata, not used" if self.unlisted else ""
        return f"{self.ok} of {self.checked} audio files usable ({parts}), {len(self.problems)} problem(s){extra}"


def check_audio(paths: list[str], cfg: AudioConfig = DEFAULT_AUDIO, decode: bool = False,
                report: Report | None = None, progress=None) -> Report:
    """Header-check (or fully decode, with decode=True) each file; one problem per bad file."""
    report = report or Report()
    for p in paths:
        report.checked += 1
        try:
            if decode:
                audio.load(p, cfg)
            else:
                audio.probe_usable(p, cfg)
            report.ok += 1
        except audio.AudioError as e:
            report.problems.append(str(e))
            report.quarantined.append(e.to_dict())
        if progress:
            progress()
    return report


def validate_dataset(root: str, cfg: AudioConfig = DEFAULT_AUDIO, decode: bool = False,
                     progress=None, nonbird_dirs: tuple[str, ...] = ()) -> Report:
    """Validate train_metadata.csv, train_soundscape_labels.csv (if present), and audio.

    A missing or malformed train_metadata.csv raises MetadataError; row and file
    problems are collected in the report.
    """
    ds = metadata.read_train_metadata(root, strict=False)
    report = Report(problems=list(ds.problems) + [f"warning: {w}" for w in ds.warnings])
    labels_csv = fileio.join(root, "train_soundscape_labels.csv")
    # list_files gives local files as absolute paths, the metadata as root + name (relative when root is)
    listed = {fileio.absolute(p) for p in ds.metadata["path"]}
    on_disk = fileio.list_files(fileio.join(root, "train_short_audio"), audio.AUDIO_SUFFIXES)
    report.unlisted = len([p for p in on_disk if fileio.absolute(p) not in listed])
    soundscapes = set(fileio.list_files(fileio.join(root, "train_soundscapes"), audio.AUDIO_SUFFIXES))
    if fileio.exists(labels_csv):
        try:
            sc = metadata.read_soundscape_labels(root)
            soundscapes |= set(sc["path"])
        except metadata.MetadataError as e:
            report.problems += [f"{e.path}: {p}" for p in e.problems]
    kinds = {"recordings": list(ds.metadata["path"]), "soundscapes": sorted(soundscapes),
             "non-bird": [p for d in nonbird_dirs for p in fileio.list_files(d, audio.AUDIO_SUFFIXES)]}
    for kind, paths in kinds.items():
        if not paths:
            continue
        ok, checked = report.ok, report.checked
        check_audio(paths, cfg, decode=decode, report=report, progress=progress)
        report.by_kind[kind] = [report.ok - ok, report.checked - checked]
    return report
