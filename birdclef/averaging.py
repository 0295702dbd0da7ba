"""Weight averaging for training: an exponential moving average (EMA) of the trainable weights.

The averaged weights are what validation scores, what picks the best epoch and what is exported;
the optimiser keeps stepping the raw weights. With a few hundred steps on a small dataset the raw
weights of one epoch differ from the next by more than the epochs' quality does (issue 16 saw
validation top-1 swing by tens of points), and an average over the last ~1/(1-decay) steps smooths
that out.

    avg = WeightAverage(model, decay=0.99)   # shadow copies of model.trainable_variables
    avg.update(step)                         # inside the train step, after apply_gradients
    with avg.applied():                      # the model holds the averaged weights inside
        evaluate(model)

The effective decay warms up as min(decay, (1 + step) / (10 + step)), so the first steps are not
averaged with the random initial weights. Batch-norm moving statistics are not averaged (they are
already moving averages, of the raw weights' activations).
"""
from __future__ import annotations

import contextlib


class WeightAverage:
    def __init__(self, model, decay: float):
        import tensorflow as tf

        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay:g}: choose a value in (0, 1)")
        self.decay = float(decay)
        self.variables = list(model.trainable_variables)
        # a tf.Module, so tf.train.Checkpoint saves the shadow weights with the model (resume keeps them)
        self.module = tf.Module(name="weight_average")
        self.module.shadow = [tf.Variable(v, trainable=False, name=f"ema_{i}") for i, v in enumerate(self.variables)]

    @property
    def shadow(self):
        return self.module.shadow

    def update(self, step):
        """TF ops: move the shadow weights towards the current ones (call after apply_gradients)."""
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        d = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        for s, v in zip(self.shadow, self.variables):
            s.assign(d * s + (1.0 - d) * tf.cast(v, s.dtype))

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its raw weights again after it."""
        raw = [v.numpy() for v in self.variables]
        try:
            for s, v in zip(self.shadow, self.variables):
                v.assign(s)
            yield
        finally:
            for r, v in zip(raw, self.variables):
                v.assign(r)

    def finalize(self):
        """Leave the averaged weights in the model (before the export)."""
        for s, v in zip(self.shadow, self.variables):
            v.assign(s)
