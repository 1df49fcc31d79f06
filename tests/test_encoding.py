"""Tests of tfglo.encoding: NeRF positional encoding against a hand-written formula."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf import encoding


def _hand_encoding(x: np.ndarray, num_octaves: int, include_identity: bool) -> np.ndarray:
    parts = [x] if include_identity else []
    for k in range(num_octaves):
        parts += [np.sin(2.0**k * x), np.cos(2.0**k * x)]
    return np.concatenate(parts, -1)


class PositionalEncodingTest(parameterized.TestCase):
    @parameterized.parameters(
        (0, True, (5, 3), (5, 3)),
        (1, True, (5, 3), (5, 9)),
        (4, True, (2, 7, 3), (2, 7, 27)),
        (4, False, (2, 7, 3), (2, 7, 24)),
        (3, True, (4, 2), (4, 14)),
    )
    def test_shape(self, num_octaves, include_identity, in_shape, out_shape):
        layer = encoding.PositionalEncoding(num_octaves, include_identity)
        out = layer(tf.zeros(in_shape))
        self.assertEqual(tuple(out.shape), out_shape)
        self.assertEqual(layer.output_size(in_shape[-1]), out_shape[-1])
        self.assertEqual(tuple(layer.compute_output_shape(in_shape)), out_shape)

    @parameterized.parameters((0, True), (1, True), (6, True), (6, False), (10, False))
    def test_matches_hand_formula(self, num_octaves, include_identity):
        x = np.random.default_rng(0).uniform(-1.5, 1.5, (4, 6, 3)).astype(np.float32)
        got = encoding.PositionalEncoding(num_octaves, include_identity)(x).numpy()
        want = _hand_encoding(x.astype(np.float64), num_octaves, include_identity)
        np.testing.assert_allclose(got, want, atol=2e-5)

    def test_known_value(self):
        # x = pi / 2: sin(x) = 1, cos(x) = 0, sin(2x) = 0, cos(2x) = -1.
        out = encoding.PositionalEncoding(2)(tf.constant([[np.pi / 2]], tf.float32)).numpy()
        np.testing.assert_allclose(out, [[np.pi / 2, 1.0, 0.0, 0.0, -1.0]], atol=1e-6)

    def test_works_in_xla(self):
        layer = encoding.PositionalEncoding(3)
        x = tf.random.stateless_uniform([8, 3], seed=[1, 2])
        got = tf.function(layer, jit_compile=True)(x)
        np.testing.assert_allclose(got.numpy(), layer(x).numpy(), atol=1e-5)

    @parameterized.parameters(-1, 2.5, True)
    def test_rejects_bad_octaves(self, num_octaves):
        with pytest.raises(ValueError, match="num_octaves must be an int >= 0"):
            encoding.PositionalEncoding(num_octaves)

    def test_rejects_empty_encoding(self):
        with pytest.raises(ValueError, match="would be empty"):
            encoding.PositionalEncoding(0, include_identity=False)

    def test_rejects_scalar_input(self):
        with pytest.raises(ValueError, match=r"needs inputs \[\.\.\., C\]"):
            encoding.PositionalEncoding(2)(tf.constant(1.0))

    def test_rejects_integer_input(self):
        with pytest.raises(ValueError, match="needs float inputs"):
            encoding.PositionalEncoding(2)(tf.constant([[1, 2, 3]]))
