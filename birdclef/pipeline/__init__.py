"""The Beam + TF Transform pipeline: stage 1 (chunks), pairing, stage 2 (TFT)."""
