import shutil

import pytest

from birdclef.data import metadata


def _write(root, text, name="train_metadata.csv"):
    (root / name).write_text(text)


def test_reads_shared_mini(shared_data):
    ds = metadata.read_train_metadata(str(shared_data / "birdclef-mini"))
    assert len(ds.metadata) == 98 and len(ds.labels) == 15
    sc = metadata.read_soundscape_labels(str(shared_data / "birdclef-mini"))
    assert len(sc) == 5 and sc["path"].str.endswith(".ogg").all()
    assert list(sc[sc.row_id == "1001_PA_10"].birds_list.iloc[0]) == ["bkcchi", "eastow", "norcar", "woothr"]


def test_missing_columns_all_listed(tmp_path):
    _write(tmp_path, "label,file\nx,y.ogg\n")
    with pytest.raises(metadata.MetadataError) as ei:
        metadata.read_train_metadata(str(tmp_path))
    msg = str(ei.value)
    for col in ("primary_label", "secondary_labels", "filename"):
        assert col in msg


def test_broken_csv_reports_every_problem_at_once(tmp_path, shared_data):
    audio_dir = tmp_path / "train_short_audio" / "barowl"
    audio_dir.mkdir(parents=True)
    src = shared_data / "birdclef-mini" / "train_short_audio" / "barowl" / "MBarnowl_1.ogg"
    shutil.copy(src, audio_dir / "a.ogg")
    _write(tmp_path, "\n".join([
        "primary_label,secondary_labels,filename,rating",
        "barowl,[],a.ogg,4.0",           # good
        ",[],b.ogg,4.0",                 # empty label (line 3)
        "barowl,[],gone.ogg,4.0",        # missing audio (line 4)
        "Bar Owl,[],a.ogg,4.0",          # malformed label (line 5)
        "barowl,not a list,a.ogg,x",     # bad secondary + bad rating + duplicate (line 6)
    ]) + "\n")
    with pytest.raises(metadata.MetadataError) as ei:
        metadata.read_train_metadata(str(tmp_path))
    problems = ei.value.problems
    joined = "\n".join(problems)
    assert "line 3: empty primary_label" in joined
    assert "line 4: audio file missing" in joined and "gone.ogg" in joined
    assert "line 5: primary_label 'Bar Owl'" in joined
    assert "line 6: secondary_labels" not in joined  # a warning of its own (below), not a reason to drop
    assert "line 6: rating 'x'" in joined
    assert "line 6: barowl/a.ogg is listed twice (first on line 2)" in joined
    # non-strict: the run goes on with the good row and accounts for the others
    ds = metadata.read_train_metadata(str(tmp_path), strict=False)
    assert list(ds.metadata["filename"]) == ["a.ogg"]
    assert len(ds.problems) == len(problems)


@pytest.mark.parametrize("cell", ["{[1]}", "[" * 5000 + "]" * 5000, "__import__('os')", "[1, 2]", "['a', ['b']]"])
def test_malformed_secondary_labels_keep_the_recording_and_are_never_evaluated(tmp_path, shared_data, cell):
    audio_dir = tmp_path / "train_short_audio" / "barowl"
    audio_dir.mkdir(parents=True)
    shutil.copy(shared_data / "birdclef-mini" / "train_short_audio" / "barowl" / "MBarnowl_1.ogg", audio_dir / "a.ogg")
    _write(tmp_path, "primary_label,secondary_labels,filename\n" + f'barowl,"{cell}",a.ogg\n')
    ds = metadata.read_train_metadata(str(tmp_path))  # strict: a bad secondary cell is no reason to fail
    assert list(ds.metadata["filename"]) == ["a.ogg"] and ds.metadata["secondary"][0] == []
    assert any("line 2: secondary_labels" in w and "kept" in w for w in ds.warnings)


@pytest.mark.parametrize("name", ["/etc/passwd", "../../secret.ogg", "x/../../y.ogg", "C:\\x.ogg"])
def test_filenames_outside_the_species_folder_are_refused_as_outside_data_dir(tmp_path, name):
    (tmp_path / "train_short_audio" / "barowl").mkdir(parents=True)
    _write(tmp_path, "primary_label,secondary_labels,filename\n" + f"barowl,[],{name}\n")
    ds = metadata.read_train_metadata(str(tmp_path), strict=False)
    assert ds.metadata.empty and [r["reason"] for r in ds.rejected] == ["outside_data_dir"]
    assert "points outside" in ds.rejected[0]["message"]


def test_labels_and_filenames_with_spaces_name_the_file_that_exists(tmp_path, shared_data):
    audio_dir = tmp_path / "train_short_audio" / "barowl"
    audio_dir.mkdir(parents=True)
    shutil.copy(shared_data / "birdclef-mini" / "train_short_audio" / "barowl" / "MBarnowl_1.ogg", audio_dir / "a.ogg")
    _write(tmp_path, "primary_label,secondary_labels,filename\n barowl ,[], a.ogg\n")
    ds = metadata.read_train_metadata(str(tmp_path))
    assert ds.metadata["path"][0] == str(audio_dir / "a.ogg") and ds.metadata["primary_label"][0] == "barowl"


def test_soundscape_labels_problems_listed(tmp_path):
    (tmp_path / "train_soundscapes").mkdir()
    (tmp_path / "train_soundscapes" / "10_AB_2020.ogg").write_bytes(b"")
    _write(tmp_path, "\n".join([
        "row_id,site,audio_id,seconds,birds",
        "10_AB_5,AB,10,5,nocall",
        "10_AB_9,AB,10,9,sparro1",        # not a multiple of 5
        "10_XY_5,XY,10,5,sparro1",        # no file for 10_XY
        "10_AB_15,AB,10,15,nocall sparro1",
        "10_AB_20,AB,10,20,zzzzz1",       # unknown label
    ]) + "\n", name="train_soundscape_labels.csv")
    with pytest.raises(metadata.MetadataError) as ei:
        metadata.read_soundscape_labels(str(tmp_path), known_labels={"sparro1"})
    joined = "\n".join(ei.value.problems)
    assert "line 3: seconds '9'" in joined
    assert "line 4: no soundscape file 10_XY" in joined
    assert "line 5: 'nocall' together with birds" in joined
    assert "line 6: unknown bird code 'zzzzz1'" in joined
    assert len(ei.value.problems) == 4


def test_a_row_id_and_birds_table_gets_site_audio_id_and_seconds_from_its_row_ids(tmp_path, shared_data):
    """The labels may be predict's submission.csv corrected by hand: row_id,birds only."""
    import pandas as pd

    mini = shared_data / "birdclef-mini"
    shutil.copytree(mini / "train_soundscapes", tmp_path / "train_soundscapes")
    full = metadata.read_soundscape_labels(str(mini))
    full[["row_id", "birds"]].to_csv(tmp_path / "train_soundscape_labels.csv", index=False)
    short = metadata.read_soundscape_labels(str(tmp_path))
    for col in ("audio_id", "site", "seconds", "start", "end", "birds"):
        assert list(short[col]) == list(full[col]), col
    assert [p.rsplit("/", 1)[1] for p in short.path] == [p.rsplit("/", 1)[1] for p in full.path]
    with open(tmp_path / "train_soundscape_labels.csv", "a") as f:
        f.write("dawn_chorus_5x,nocall\nlake_10,nocall\n")
    with pytest.raises(metadata.MetadataError) as ei:
        metadata.read_soundscape_labels(str(tmp_path))
    joined = "\n".join(ei.value.problems)
    assert f"line {len(full) + 3}: row_id 'lake_10' is not <audio_id>_<site>_<seconds>" in joined
    assert f"line {len(full) + 2}: seconds '5x'" in joined
    assert not pd.read_csv(tmp_path / "train_soundscape_labels.csv").columns.difference(["row_id", "birds"]).size


def test_remote_metadata_path(shared_data):
    import fsspec

    root = "memory://meta-test"
    fs = fsspec.filesystem("memory")
    src = shared_data / "birdclef-mini"
    fs.pipe(f"{root}/train_metadata.csv", (src / "train_metadata.csv").read_bytes())
    for p in sorted((src / "train_short_audio").rglob("*.ogg")):
        fs.pipe(f"{root}/train_short_audio/{p.parent.name}/{p.name}", b"x")
    ds = metadata.read_train_metadata(root)
    assert len(ds.metadata) == 98
    assert ds.metadata["path"].iloc[0].startswith("memory://meta-test/train_short_audio/")
