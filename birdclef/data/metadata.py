"""Read and validate BirdCLEF-2021 CSVs.

`train_metadata.csv` (Kaggle columns, one row per recording under
`train_short_audio/<primary_label>/<filename>`) and
`train_soundscape_labels.csv` (`row_id,site,audio_id,seconds,birds`, one row per
5 s window, `seconds` = window end, `birds` space separated or `nocall`; a table of `row_id,birds`
only, as `birdclef predict` writes submission.csv, gets the other three from its row ids).

Validation collects every problem of a file before it reports, so a user fixes
them all in one pass. Paths may be local or remote (fsspec).
"""
from __future__ import annotations

import dataclasses
import io
import re

import pandas as pd

from birdclef import fileio
from birdclef.config import AUDIO_SUFFIXES, NOCALL

# Columns as Kaggle ships train_metadata.csv for BirdCLEF-2021.
TRAIN_METADATA_COLUMNS = [
    "primary_label", "secondary_labels", "type", "latitude", "longitude", "scientific_name",
    "common_name", "author", "date", "filename", "license", "rating", "time", "url",
]
TRAIN_METADATA_REQUIRED = ["primary_label", "secondary_labels", "filename"]
SOUNDSCAPE_LABEL_COLUMNS = ["row_id", "site", "audio_id", "seconds", "birds"]
LABEL_RE = re.compile(r"^[a-z0-9_]+$")


class MetadataError(Exception):
    """All problems found in one CSV; `problems` is a list of one-line strings."""

    def __init__(self, path: str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s):\n{lines}")


@dataclasses.dataclass
class Dataset:
    """A validated BirdCLEF-layout dataset root."""

    root: str
    metadata: pd.DataFrame  # usable rows of train_metadata.csv plus `path` and `secondary` (list)
    warnings: list[str]
    problems: list[str] = dataclasses.field(default_factory=list)  # rows left out, one line each
    rejected: list[dict] = dataclasses.field(default_factory=list)  # {path, reason, message} per row left out

    @property
    def labels(self) -> list[str]:
        return sorted(self.metadata["primary_label"].unique())


def _read_csv(path: str) -> pd.DataFrame:
    if not fileio.exists(path):
        raise MetadataError(path, [f"file not found: {path}; fix: point --data-dir at a BirdCLEF-layout folder"])
    text = fileio.read_text(path)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MetadataError(path, [f"not a readable CSV: {e}"]) from e


def _missing_columns(df: pd.DataFrame, required: list[str]) -> list[str]:
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return []
    return [f"missing column(s) {', '.join(missing)} (found: {', '.join(df.columns) or 'none'}); "
            f"fix: use the column names Kaggle ships ({', '.join(required)})"]


_QUOTED = re.compile(r"""\s*(?:'([^'\[\]{}]*)'|"([^"\[\]{}]*)")\s*""")


def parse_label_list(text: str) -> list[str]:
    """Kaggle writes secondary labels as a Python list literal: "['a', 'b']".

    Parsed by a grammar of its own, never evaluated: a flat list of quoted strings (or nothing).
    Anything else (nesting, sets, numbers, a 10 MB expression) raises ValueError."""
    text = (text or "").strip()
    if not text or text == "[]":
        return []
    if len(text) > 10_000 or not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"not a list of quoted labels: {text[:60]!r}")
    inner = text[1:-1].strip()
    items = inner.split(",")
    if items and not items[-1].strip():
        items = items[:-1]  # a trailing comma, as Python allows
    out = []
    for item in items:
        m = _QUOTED.fullmatch(item)
        if not m:
            raise ValueError(f"not a list of quoted labels: {text[:60]!r}")
        out.append((m.group(1) if m.group(1) is not None else m.group(2)).strip())
    return [o for o in out if o]


def audio_path(root: str, primary_label: str, filename: str) -> str:
    return fileio.join(root, "train_short_audio", primary_label, filename)


def read_train_metadata(root: str, metadata_file: str = "train_metadata.csv",
                        check_files: bool = True, strict: bool = True) -> Dataset:
    """Read and validate train_metadata.csv.

    A problem with the file as a whole (unreadable, missing columns, no rows)
    always raises MetadataError. Row problems (empty or malformed labels, a
    missing audio file, duplicates, bad secondary labels or rating) are all
    collected: strict=True raises them together; strict=False leaves those rows
    out and lists them in `Dataset.problems`, so a run goes on with the rest.
    """
    csv_path = metadata_file if ("/" in metadata_file or "://" in metadata_file) else fileio.join(root, metadata_file)
    df = _read_csv(csv_path)
    problems = _missing_columns(df, TRAIN_METADATA_REQUIRED)
    if problems:
        raise MetadataError(csv_path, problems)
    warnings: list[str] = []
    if df.empty:
        raise MetadataError(csv_path, ["no rows: the CSV has a header but lists no recordings"])
    existing = None
    if check_files:
        existing = set(fileio.list_files(fileio.join(root, "train_short_audio"), ("",)))
        existing = {fileio.basename(fileio.dirname(p)) + "/" + fileio.basename(p) for p in existing}
    secondary: list[list[str]] = []
    primaries = set(df["primary_label"])
    seen: dict[str, int] = {}
    bad_rows: list[int] = []
    rejected: list[dict] = []
    for i, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        before = len(problems)
        label, fname = str(row.primary_label).strip(), str(row.filename).strip()
        where = f"line {i}"
        if not label:
            problems.append(f"{where}: empty primary_label")
        elif not LABEL_RE.match(label):
            problems.append(f"{where}: primary_label {label!r} is not a lowercase code like 'gretit1'")
        outside = bool(fname) and (fname.startswith(("/", "\\")) or "://" in fname or ":" in fname[:3]
                                   or ".." in fname.replace("\\", "/").split("/"))
        if not fname:
            problems.append(f"{where}: empty filename")
        elif outside:
            problems.append(f"{where}: filename {fname!r} points outside train_short_audio/{label}/; fix: give the "
                            "file's name inside its species folder")
        key = f"{label}/{fname}"
        if fname and key in seen:
            problems.append(f"{where}: {key} is listed twice (first on line {seen[key]})")
        seen.setdefault(key, i)
        try:
            sec = parse_label_list(row.secondary_labels)
        except ValueError:  # the recording itself is fine: kept, without secondary labels
            warnings.append(f"{where}: secondary_labels {str(row.secondary_labels)[:60]!r} is not a list like "
                            "['a', 'b']; the recording is kept without secondary labels (fix the cell to use them)")
            sec = []
        unknown = [s for s in sec if s not in primaries]
        if unknown:
            warnings.append(f"{where}: secondary label(s) {', '.join(unknown)} have no recordings of their own")
        secondary.append(sec)
        if existing is not None and label and fname and not outside and key not in existing:
            problems.append(f"{where}: audio file missing: {audio_path(root, label, fname)}")
        if "rating" in df.columns and str(row.rating).strip():
            try:
                float(row.rating)
            except ValueError:
                problems.append(f"{where}: rating {row.rating!r} is not a number")
        if len(problems) > before:
            bad_rows.append(i - 2)
            missing = existing is not None and key not in existing and not outside
            reason = "outside_data_dir" if outside else "missing" if missing and len(problems) - before == 1 \
                else "metadata"
            rejected.append({"path": audio_path(root, label, fname) if label and fname and not outside
                             else f"{csv_path}:{i}", "reason": reason,
                             "message": "; ".join(f"{csv_path}: {p}" for p in problems[before:])})
    if problems and strict:
        raise MetadataError(csv_path, problems)
    df = df.copy()
    df["secondary"] = secondary
    # the values checked above (stripped) are the ones used: a label with spaces names its folder
    df["primary_label"] = [str(v).strip() for v in df["primary_label"]]
    df["filename"] = [str(v).strip() for v in df["filename"]]
    df["path"] = [audio_path(root, l, f) for l, f in zip(df["primary_label"], df["filename"])]
    df = df.drop(index=df.index[bad_rows]).reset_index(drop=True)
    return Dataset(root=str(root), metadata=df, warnings=warnings,
                   problems=[f"{csv_path}: {p}" for p in problems], rejected=rejected)


def soundscape_files(root: str, folder: str = "train_soundscapes") -> dict[str, str]:
    """Map '<audio_id>_<site>' to the soundscape file path."""
    out = {}
    for p in fileio.list_files(fileio.join(root, folder), AUDIO_SUFFIXES):
        parts = fileio.basename(p).rsplit(".", 1)[0].split("_")
        if len(parts) >= 2:
            out[f"{parts[0]}_{parts[1]}"] = p
    return out


def _with_parts_of_row_id(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """A table of `row_id,birds` only (the columns of `birdclef predict`'s submission.csv, corrected by
    hand) gets `audio_id`, `site` and `seconds` from its row ids (`<audio_id>_<site>_<seconds>`).
    Also returns {line: problem} for row ids without those three parts."""
    if not {"row_id", "birds"} <= set(df.columns) or {"site", "audio_id", "seconds"} & set(df.columns):
        return df, {}
    parts = [r.rsplit("_", 2) for r in df["row_id"]]
    bad = {i: f"line {i}: row_id {r!r} is not <audio_id>_<site>_<seconds>; fix: name the soundscape "
              "<audio_id>_<site>_<date>.ogg in train_soundscapes/ and predict again (its row ids follow the name)"
           for i, (r, p) in enumerate(zip(df["row_id"], parts), start=2) if len(p) != 3 or not all(p)}
    df = df.copy()
    df["audio_id"], df["site"], df["seconds"] = ([p[k] if len(p) == 3 else "" for p in parts] for k in range(3))
    return df, bad


def read_soundscape_labels(root: str, labels_file: str = "train_soundscape_labels.csv",
                           known_labels: set[str] | None = None, check_files: bool = True) -> pd.DataFrame:
    """Read and validate train_soundscape_labels.csv.

    Returns the rows plus `path` (the soundscape file), `start` and `end` (s) and
    `birds_list`. With known_labels, a bird code outside it is a problem.
    """
    csv_path = labels_file if ("/" in labels_file or "://" in labels_file) else fileio.join(root, labels_file)
    df, unsplit = _with_parts_of_row_id(_read_csv(csv_path))
    missing = _missing_columns(df, SOUNDSCAPE_LABEL_COLUMNS)
    if missing:
        raise MetadataError(csv_path, missing)
    problems = list(unsplit.values())
    files = soundscape_files(root) if check_files else {}
    paths, starts, ends, birds = [], [], [], []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        where = f"line {i}"
        if i in unsplit:  # named above: its row id has no parts to check
            paths.append("")
            starts.append(float("nan"))
            ends.append(float("nan"))
            birds.append([])
            continue
        try:
            end = float(row.seconds)
            if end <= 0 or end % 5:
                raise ValueError
        except ValueError:
            problems.append(f"{where}: seconds {row.seconds!r} is not a positive multiple of 5 (window end)")
            end = float("nan")
        expected_id = f"{row.audio_id}_{row.site}_{row.seconds}"
        if row.row_id != expected_id:
            problems.append(f"{where}: row_id {row.row_id!r} should be {expected_id!r} (audio_id_site_seconds)")
        tokens = str(row.birds).split()
        if not tokens:
            problems.append(f"{where}: empty birds; fix: write '{NOCALL}' for a window with no bird")
        for t in tokens:
            if not LABEL_RE.match(t):
                problems.append(f"{where}: bird code {t!r} is not a lowercase code")
            elif known_labels is not None and t != NOCALL and t not in known_labels:
                problems.append(f"{where}: unknown bird code {t!r} (not among the {len(known_labels)} known labels)")
        if NOCALL in tokens and len(tokens) > 1:
            problems.append(f"{where}: '{NOCALL}' together with birds ({row.birds!r})")
        key = f"{row.audio_id}_{row.site}"
        path = files.get(key, "")
        if check_files and not path:
            problems.append(f"{where}: no soundscape file {key}_*.ogg in {fileio.join(root, 'train_soundscapes')}")
        paths.append(path)
        starts.append(end - 5.0)
        ends.append(end)
        birds.append(tokens)
    if problems:
        raise MetadataError(csv_path, problems)
    df = df.copy()
    df["path"], df["start"], df["end"], df["birds_list"] = paths, starts, ends, birds
    return df
