"""The docs: a short README, a site that builds strictly, commands that exist, and a walk-through that runs."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, bash_blocks

DOCS = sorted((REPO / "docs").glob("*.md"))


def _command_lines(text: str) -> list[str]:
    """`birdclef ...` lines of the code blocks of a markdown text."""
    lines = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # continued lines
        lines += [line.strip() for line in block.splitlines() if line.strip().startswith("birdclef ")]
    return lines


def test_readme_is_short_and_the_docs_site_builds_strictly(tmp_path):
    assert len((REPO / "README.md").read_text().splitlines()) < 120
    if shutil.which("mkdocs") is None and not os.environ.get("CI"):
        pytest.skip("mkdocs is installed with the test extra")
    r = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    nav = (REPO / "mkdocs.yml").read_text()
    for page in DOCS:
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_every_command_shown_in_the_docs_parses(tmp_path):
    """Each concrete command line of the README and docs (not the usage lines with [optional] parts) is
    accepted by the CLI's parser: a renamed or removed flag in the code fails here."""
    from birdclef import cli

    seen = 0
    for path in [REPO / "README.md", *DOCS]:
        for line in _command_lines(path.read_text()):
            if any(tok in line for tok in ("[", "|", "...", "…")):
                continue  # a usage synopsis, not a command
            argv = shlex.split(line)[1:]
            parser = cli.build_parser()
            try:
                args, extra = parser.parse_known_args(cli.one_style(parser, argv))
            except SystemExit:
                pytest.fail(f"{path.name}: `{line}` is refused by the parser")
            assert not extra or args.func is cli.cmd_transform, f"{path.name}: `{line}`: unknown {extra}"
            seen += 1
    assert seen >= 12


def _demo_like(tiny_model, tmp_path, copy_model: bool = False) -> Path:
    """The tiny synthetic model and its data laid out as `birdclef demo --work-dir birdclef-demo` leaves them
    (the model copied where the commands write into it: other tests share it)."""
    root, ckpt = tiny_model
    demo = tmp_path / "birdclef-demo"
    demo.mkdir()
    (demo / "data").symlink_to(root / "data")
    if copy_model:
        shutil.copytree(ckpt, demo / "model")
    else:
        (demo / "model").symlink_to(ckpt)
    return demo


def _run_block(block: str, cwd: Path) -> subprocess.CompletedProcess:
    """A docs code block run as written, by bash, stopping at the first failing command."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return r


def test_find_calls_walkthrough_runs_on_demo_like_data(tiny_model, tmp_path):
    """docs/find-calls.md's demo commands, run as written (bash, in order) on the tiny synthetic model laid
    out like the demo; `birdclef review` is the one interactive step: its labels are given through the
    page's store, as the page's buttons do (the page itself is tested in test_review.py)."""
    from birdclef import review

    root = _demo_like(tiny_model, tmp_path).resolve() / "data"
    text = (REPO / "docs" / "find-calls.md").read_text().split("## On your recordings")[0]
    blocks = bash_blocks(text)
    assert len(blocks) == 3 and blocks[1].strip().startswith("birdclef review")

    _run_block(blocks[0], tmp_path)
    assert (tmp_path / "found" / "search.csv").exists() and (tmp_path / "found" / "search.selections.txt").exists()
    # review: label the found windows as the page would (the query's species for the best, `not` after)
    store = review.Store(str(tmp_path / "calls.sqlite"), str(tmp_path / "found" / "search.csv"))
    query_species = sorted((root / "train_short_audio").iterdir())[0].name
    n = store.total()
    assert n >= 4
    for i in range(n):
        store.set_label(i, query_species if i < n // 2 else "not")
    _run_block(blocks[2], tmp_path)
    assert (tmp_path / "my-classifier" / "classifier.json").exists()
    scores = (tmp_path / "labelled" / "scores.csv").read_text().splitlines()
    assert query_species in scores[0].split(",") and len(scores) > 1


def test_label_soundscapes_page_runs_from_draft_to_evaluation(tiny_model, tmp_path):
    """docs/label-soundscapes.md's commands, run as written: predict's submission.csv, copied as the labels
    of the soundscapes it was made from, validates, and evaluate scores the model on those windows."""
    _demo_like(tiny_model, tmp_path, copy_model=True)  # evaluate writes into the model folder
    blocks = bash_blocks((REPO / "docs" / "label-soundscapes.md").read_text())
    assert len(blocks) == 2 and "birdclef evaluate" in blocks[1]
    r = _run_block(blocks[0], tmp_path)
    assert ", 0 problem(s)" in r.stdout, r.stdout
    _run_block(blocks[1], tmp_path)
    ev = json.loads((tmp_path / "birdclef-demo" / "model" / "evaluation.json").read_text())
    n_windows = len((tmp_path / "draft" / "submission.csv").read_text().splitlines()) - 1
    assert ev["soundscape_split"] == "all" and ev["soundscape_windows"] == n_windows >= 1
    # the labels are the model's own draft at threshold 0.5: scored at 0.5 it agrees with every row
    assert ev["threshold"] == 0.5 and ev["row_f1"] == 1.0


def test_train_on_your_data_page_runs_from_validate_to_ensemble(tiny_model, tmp_path):
    """docs/train-your-data.md's two blocks, run as written on the tiny synthetic dataset (its folders in
    place of DATA, NONBIRD, W and SOUNDSCAPES), with --epochs 2 in place of 20 to keep the suite short."""
    root, _ = tiny_model
    data = root / "data"
    blocks = bash_blocks((REPO / "docs" / "train-your-data.md").read_text())
    assert len(blocks) == 2
    places = {"DATA": str(data), "NONBIRD": str(data / "nonbird"), "W": str(tmp_path / "w"),
              "SOUNDSCAPES": str(data / "train_soundscapes")}
    for block in blocks:
        block = re.sub(r"\b(DATA|NONBIRD|W|SOUNDSCAPES)\b", lambda m: places[m.group(1)], block)
        _run_block(block.replace("--epochs 20", "--epochs 2"), tmp_path)
    w = tmp_path / "w"
    assert (w / "predictions" / "submission.csv").exists()
    ens = json.loads((w / "ensemble" / "run.json").read_text())
    assert len(ens["ensemble"]["members"]) == 3
    assert json.loads((w / "ensemble" / "evaluation.json").read_text())["classes"] == ens["classes"]
    assert (w / "ensemble" / "model.onnx").exists()
