# Shim for Beam's `--setup_file` (DataflowRunner workers build an sdist from it);
# all metadata lives in pyproject.toml.
from setuptools import setup

setup()
