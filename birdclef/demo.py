"""`birdclef demo`: every stage that exists, end to end, on fresh synthetic data."""
from __future__ import annotations

import json
import time

from birdclef import fileio


def _list_outputs(work_dir: str) -> list[str]:
    lines = []
    for p in fileio.list_files(work_dir, ("",)):
        if "/train_short_audio/" in p or "/nonbird/" in p and p.endswith(".ogg"):
            continue
        lines.append(p)
    return lines


def run(args) -> int:
    from birdclef import cli

    t0 = time.time()
    work = args.work_dir
    data = fileio.join(work, "data")
    fileio.makedirs(work)
    steps = []

    s = cli.run_synth(data, cli.synth_config(args))
    steps.append(f"synth     {data}: {s['recordings']} recordings, {len(s['species'])} species, "
                 f"{s['soundscapes']} labelled soundscapes, {s['nonbird_clips']} non-bird clips")

    rep = cli.run_validate(data, decode=True, min_duration=0.25)
    report_path = fileio.join(work, "validate.json")
    fileio.write_text(report_path, json.dumps(rep.__dict__, indent=2))
    steps.append(f"validate  {report_path}: {rep.ok} of {rep.checked} files usable, {len(rep.problems)} problem(s)")

    print(f"\nbirdclef demo finished in {time.time() - t0:.0f} s. What it made:")
    for line in steps:
        print(f"  {line}")
    print(f"\nFiles in {work} (audio folders summarised):")
    n_audio = len(fileio.list_files(data, (".ogg",)))
    print(f"  {n_audio} .ogg files under {data}/{{train_short_audio,train_soundscapes,test_soundscapes,nonbird}}")
    for p in _list_outputs(work):
        if not p.endswith(".ogg"):
            print(f"  {p}")
    return 0 if rep.ok else 1
