"""Stage bookkeeping in a work directory: skip what is finished, refuse to mix.

Each finished stage leaves `<dir>/_SUCCESS.json` holding the parameters it was
made with. Rerunning with the same parameters skips the stage; other parameters
are refused with a message naming both, so finished output is never overwritten
or mixed silently.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from birdclef import fileio


class StageConflict(Exception):
    pass


def _canonical(params: dict) -> dict:
    return json.loads(json.dumps(params, sort_keys=True, default=str))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differing(old: dict, new: dict) -> list[str]:
    old, new = _flat(old), _flat(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def claim(params_file: str, params: dict, what: str, fix: str, key: str = "params",
          extra: dict | None = None) -> None:
    """Pin the parameters a resumable output is being made with.

    The first run records `params` under `key` in params_file (with `extra`); a later
    run with the same parameters goes on (resumes), one with other parameters is
    refused with a StageConflict naming them, so two settings never mix in one output."""
    new = _canonical(params)
    recorded = fileio.read_json(params_file)  # None: absent, or empty / cut short: recorded anew
    if isinstance(recorded, dict) and key in recorded:
        old = recorded[key]
        if old != new:
            raise StageConflict(f"{fileio.dirname(params_file)} holds {what} made with another "
                                f"{', '.join(_differing(old, new))}; fix: {fix} (nothing was overwritten)")
    fileio.write_text(params_file, json.dumps({key: new, **(extra or {})}, indent=2))


def marker(out_dir: str) -> str:
    return fileio.join(out_dir, "_SUCCESS.json")


def is_done(out_dir: str, params: dict, stage: str) -> bool:
    """True when out_dir holds this stage finished with these parameters.

    Raises StageConflict when it was finished with other parameters. A folder
    without a marker is an interrupted run: the stage runs again into it.
    """
    done = fileio.read_json(marker(out_dir))  # empty or cut short: not finished, the stage runs again
    if isinstance(done, dict):
        if done.get("params") == _canonical(params):
            return True
        diff = _differing(done.get("params", {}), _canonical(params))
        raise StageConflict(
            f"{out_dir} already holds a finished '{stage}' made with other parameters "
            f"(differing: {', '.join(diff)}). Fix: use another --work-dir, or delete {out_dir} to remake it.")
    return False


def mark_done(out_dir: str, params: dict, stage: str, summary: dict | None = None) -> None:
    fileio.write_text_atomic(marker(out_dir), json.dumps(
        {"stage": stage, "params": _canonical(params), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
         "summary": summary or {}}, indent=2, sort_keys=True))


def missing_step(work_dir: str, upto: str = "transform") -> str | None:
    """What a command reading `work_dir` needs done first, as a one-line fix, or None when `upto`
    (preprocess or transform) has finished there. Reads two small marker files: no heavy import."""
    from birdclef import fileio

    if not fileio.exists(work_dir):
        return (f"{work_dir} does not exist; fix: run `birdclef preprocess --work-dir {work_dir} --data-dir DATA` "
                f"and `birdclef transform --work-dir {work_dir}` first (or `birdclef demo`)")
    if not isinstance(fileio.read_json(marker(fileio.join(work_dir, "preprocess"))), dict):
        return (f"{work_dir} holds no finished preprocess; fix: run `birdclef preprocess --work-dir {work_dir} "
                f"--data-dir DATA`, then `birdclef transform --work-dir {work_dir}`")
    if upto == "transform" and not isinstance(
            fileio.read_json(marker(fileio.join(work_dir, "transform", "tft"))), dict):
        return (f"{work_dir} holds a finished preprocess but no finished transform; fix: run "
                f"`birdclef transform --work-dir {work_dir}` (an interrupted one resumes)")
    return None


LOCK = ".birdclef.lock"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def locked(out_dir: str, what: str):
    """Hold `out_dir` for one run: a second run on it (another process) is refused with the holder's
    pid and start time, so two runs never write one output. A lock whose process is gone (killed, a
    crash) is taken over. Remote folders (gs://, s3://) are not locked: object stores have no atomic
    create here."""
    if fileio.is_remote(out_dir):
        yield
        return
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, LOCK)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
          "what": what}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = fileio.read_json(path)
            if isinstance(holder, dict) and holder.get("pid") != me["pid"]:
                if holder.get("host") != me["host"] or _alive(holder.get("pid")):
                    raise StageConflict(
                        f"{out_dir} is in use by {holder.get('what', 'another run')} (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}); fix: wait for it to finish or "
                        f"stop it, then run again (a lock left by a process that is gone is taken over; on another "
                        f"machine, delete {path} once that run is gone)")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # a dead process's lock, or our own left by an earlier run in this process
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise StageConflict(f"{out_dir}: could not take the lock {path}; fix: delete it if no run is using the folder")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if (fileio.read_json(path) or {}).get("pid") == me["pid"]:
                os.remove(path)
