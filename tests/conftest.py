import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BIRDCLEF_SHARED_DATA", REPO.parent / "shared" / "data"))


def bash_blocks(text: str) -> list[str]:
    """The ```bash code blocks of a markdown text: the commands docs tests run as written."""
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.tsv").exists():
        pytest.fail(f"test data not found at {SHARED_DATA}: clone next to ../shared or set BIRDCLEF_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """A small synthetic dataset shared by tests that only read it."""
    from birdclef.data import synth

    out = tmp_path_factory.mktemp("synth") / "data"
    synth.generate(str(out), synth.SynthConfig(species=3, recordings_per_species=3, soundscapes=1,
                                               test_soundscapes=1, nonbird_per_category=1,
                                               max_duration_s=4.0, soundscape_duration_s=15.0))
    return out


def make_work(root, **synth_args) -> str:
    """A small synthetic dataset under root, taken through preprocess and transform; returns the work dir."""
    from birdclef import preprocess, transform
    from birdclef.data import synth

    data = str(root / "data")
    cfg = dict(species=3, recordings_per_species=3, soundscapes=1, test_soundscapes=1, nonbird_per_category=1,
               max_duration_s=5.0, soundscape_duration_s=15.0)
    synth.generate(data, synth.SynthConfig(**{**cfg, **synth_args}))
    work = str(root / "w")
    preprocess.run(work, preprocess.PreprocessConfig(data_dir=data, nonbird_dirs=(f"{data}/nonbird",)),
                   log=lambda s: None)
    transform.run(work, ["--direct_running_mode=in_memory"], log=lambda s: None)
    return work


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(root, ckpt_dir): `make_work`, then 2 short epochs of train."""
    from birdclef import train

    root = tmp_path_factory.mktemp("tiny")
    work = make_work(root)
    ckpt = str(root / "ck")
    train.run(train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=8, epochs=2, steps_per_epoch=4,
                                jit_compile=False), log=lambda s: None)
    return root, ckpt


@pytest.fixture(scope="session")
def tiny_pair(tiny_model, tmp_path_factory):
    """(root, ckpt_dir, second ckpt_dir, ensemble dir): `tiny_model`, another seed of it on the same
    transform output (1 epoch), and `birdclef ensemble` of the two."""
    from birdclef import ensemble, train

    root, a = tiny_model
    here = tmp_path_factory.mktemp("pair")
    b, ens = str(here / "seed1"), str(here / "ens")
    train.run(train.TrainConfig(data_path=str(root / "w"), ckpt_dir=b, batch_size=8, epochs=1, steps_per_epoch=4,
                                jit_compile=False, seed=1), log=lambda s: None)
    ensemble.build([a, b], ens, log=lambda s: None)
    return root, a, b, ens
