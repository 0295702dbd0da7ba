"""birdclef: learn to recognise birds from their calls."""

__version__ = "0.1.0"
