"""Dataset readers, validation, splits and synthetic data."""
