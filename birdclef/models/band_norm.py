"""`train --band-norm`: each mel band minus its mean over the chunk's frames, before the network.

In the log domain a recording's gain and a stationary background (hum, wind, a steady insect band) are
about constant over 2 s, so subtracting the per-band mean removes them; calls, which change within the
chunk, pass. Imported only when a run asks for it."""
import tensorflow as tf
import tf_keras as keras


class BandNorm(keras.layers.Layer):
    """[batch, frames, n_mels] -> the same, minus its mean over frames per band."""

    def call(self, x):
        return x - tf.reduce_mean(x, axis=1, keepdims=True)


def wrap(net, mel_shape: tuple[int, int], name: str):
    inp = keras.Input(mel_shape, name="mel")
    return keras.Model(inp, net(BandNorm(name="band_norm")(inp)), name=f"{name}_band_norm")
