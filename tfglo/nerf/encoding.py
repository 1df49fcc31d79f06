"""Positional encoding (NeRF): identity plus sin/cos of the input at octave frequencies.

gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)], applied per channel.
The frequencies are 2^k without a factor pi, as in tensorflow-graphics and the authors' code: the
scene lives inside a sphere of radius ~1, so the lowest octave (period 2 pi) already spans it.
"""

import keras
import tensorflow as tf


def _tfg_positional_encoding():
    # Lazy: importing tensorflow_graphics initialises TensorFlow's devices (see DESIGN / rules).
    from tensorflow_graphics.math.feature_representation import positional_encoding

    return positional_encoding


def encoded_size(channels: int, num_octaves: int, include_identity: bool = True) -> int:
    """Returns the output channels of a positional encoding of `channels` input channels."""
    return channels * (int(include_identity) + 2 * num_octaves)


class PositionalEncoding(keras.layers.Layer):
    """`[..., C] -> [..., C * (include_identity + 2 L)]` NeRF positional encoding.

    The channel layout is the tensorflow-graphics one (whose op computes it):
    `[x (C), sin(x) (C), cos(x) (C), sin(2 x) (C), cos(2 x) (C), ...]`; without the identity the
    first C channels are left out.

    Args:
      num_octaves: L >= 0, the number of frequencies 2^0 .. 2^(L-1).
      include_identity: whether the raw input leads the output.

    Raises:
      ValueError: `num_octaves` < 0, or an empty encoding (L = 0 without the identity).
    """

    def __init__(self, num_octaves: int, include_identity: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_octaves, bool) or not isinstance(num_octaves, int) or num_octaves < 0:
            raise ValueError(f"num_octaves must be an int >= 0, got {num_octaves!r}")
        if num_octaves == 0 and not include_identity:
            raise ValueError("an encoding with num_octaves=0 and no identity would be empty")
        self.num_octaves = num_octaves
        self.include_identity = bool(include_identity)

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(
                f"PositionalEncoding needs inputs [..., C] with a known C, got {input_shape}"
            )
        self.built = True

    def output_size(self, channels: int) -> int:
        """Output channels for `channels` input channels."""
        return encoded_size(channels, self.num_octaves, self.include_identity)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_size(input_shape[-1]))

    def call(self, inputs):
        """Encodes `inputs` `[..., C]` float into `[..., C * (include_identity + 2 L)]`."""
        inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_floating:
            raise ValueError(f"PositionalEncoding needs float inputs, got {inputs.dtype.name}")
        encoded = _tfg_positional_encoding()(inputs, self.num_octaves)
        if not self.include_identity:
            encoded = encoded[..., inputs.shape[-1] :]
        return encoded

    def get_config(self):
        config = super().get_config()
        config.update(num_octaves=self.num_octaves, include_identity=self.include_identity)
        return config
