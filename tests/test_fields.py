"""Tests of tfglo.fields: shapes, output ranges, conditioning, the skip connection."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf import config as config_lib
from tfglo.nerf import fields

SMALL = config_lib.ForegroundConfig(width=16, depth=4, skip_layer=2, num_octaves=3)
SMALL_BG = config_lib.BackgroundConfig(width=8, depth=2, num_octaves=2)


def _inputs(num_rays=5, num_samples=7, latent_dim=6, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1.0, 1.0, (num_rays, num_samples, 3)).astype(np.float32)
    latents = rng.normal(0.0, 1.0, (num_rays, latent_dim)).astype(np.float32)
    return tf.constant(points), tf.constant(latents)


def _relu(x):
    return np.maximum(x, 0.0)


def _reference_foreground(field, points, latents):
    """The field written the plain way: explicit concatenations, latents copied per sample."""
    num_rays, num_samples, _ = points.shape
    enc = field.encoding(points).numpy()
    z = np.broadcast_to(latents[:, None, :], (num_rays, num_samples, latents.shape[-1]))
    inputs = np.concatenate([enc, z], -1)
    kernels = [k.numpy() for k in field.kernels]
    biases = [b.numpy() for b in field.biases]
    h = None
    for i in range(field.config.depth):
        x = inputs if i == 0 else h
        if i == field.config.skip_layer and i > 0:
            x = np.concatenate([h, inputs], -1)
        h = _relu(x @ kernels[i] + biases[i])
    raw = h @ kernels[-1] + biases[-1]
    density = np.log1p(np.exp(raw[..., 0] + field.config.density_bias))
    rgb = 1.0 / (1.0 + np.exp(-raw[..., 1:]))
    return density, rgb


class ForegroundFieldTest(parameterized.TestCase):
    @parameterized.parameters((1, 1, 4), (5, 7, 6), (3, 64, 2))
    def test_shapes_and_ranges(self, num_rays, num_samples, latent_dim):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs(num_rays, num_samples, latent_dim)
        density, rgb = field(points * 3.0, latents * 5.0)
        self.assertEqual(tuple(density.shape), (num_rays, num_samples))
        self.assertEqual(tuple(rgb.shape), (num_rays, num_samples, 3))
        self.assertGreaterEqual(float(tf.reduce_min(density)), 0.0)
        self.assertGreaterEqual(float(tf.reduce_min(rgb)), 0.0)
        self.assertLessEqual(float(tf.reduce_max(rgb)), 1.0)

    def test_matches_plain_concatenated_mlp(self):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs()
        density, rgb = field(points, latents)
        want_density, want_rgb = _reference_foreground(field, points.numpy(), latents.numpy())
        np.testing.assert_allclose(density.numpy(), want_density, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rgb.numpy(), want_rgb, rtol=1e-4, atol=1e-5)

    def test_skip_layer_sees_encoding_and_latent(self):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs(latent_dim=6)
        field(points, latents)
        enc = field.encoded_dim
        self.assertEqual(enc, 3 * (1 + 2 * SMALL.num_octaves))
        fan_ins = [int(k.shape[0]) for k in field.kernels]
        self.assertEqual(fan_ins, [enc + 6, 16, 16 + enc + 6, 16, 16])
        # The skip kernel's rows for [gamma(x), z] get gradient: the skip is wired in.
        skip_kernel = field.kernels[SMALL.skip_layer]
        with tf.GradientTape() as tape:
            density, rgb = field(points, latents)
            loss = tf.reduce_sum(density) + tf.reduce_sum(rgb)
        grad = tape.gradient(loss, skip_kernel).numpy()
        self.assertGreater(np.abs(grad[16 : 16 + enc]).sum(), 0.0)
        self.assertGreater(np.abs(grad[16 + enc :]).sum(), 0.0)

    def test_no_skip(self):
        config = config_lib.ForegroundConfig(width=8, depth=3, skip_layer=0, num_octaves=2)
        field = fields.ForegroundField(config)
        points, latents = _inputs()
        field(points, latents)
        self.assertEqual([int(k.shape[0]) for k in field.kernels], [15 + 6, 8, 8, 8])
        want_density, _ = _reference_foreground(field, points.numpy(), latents.numpy())
        np.testing.assert_allclose(field(points, latents)[0].numpy(), want_density, rtol=1e-4)

    def test_latent_changes_output(self):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs()
        density_a, rgb_a = field(points, latents)
        density_b, rgb_b = field(points, latents + 1.0)
        self.assertGreater(float(tf.reduce_max(tf.abs(density_a - density_b))), 1e-4)
        self.assertGreater(float(tf.reduce_max(tf.abs(rgb_a - rgb_b))), 1e-4)
        # Each ray uses its own latent: changing ray 0's code leaves ray 1 alone.
        shifted = tf.tensor_scatter_nd_add(latents, [[0]], tf.ones([1, 6]))
        density_c, _ = field(points, shifted)
        np.testing.assert_allclose(density_c[1:].numpy(), density_a[1:].numpy(), rtol=1e-6)
        self.assertGreater(float(tf.reduce_max(tf.abs(density_c[0] - density_a[0]))), 1e-4)

    def test_density_bias_and_activations(self):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs()
        field(points, latents)
        for weight in field.weights:
            weight.assign(tf.zeros_like(weight))
        density, rgb = field(points, latents)
        np.testing.assert_allclose(density.numpy(), np.log1p(np.exp(-1.0)), rtol=1e-6)
        np.testing.assert_allclose(rgb.numpy(), 0.5, rtol=1e-6)

    def test_xla_matches_eager(self):
        field = fields.ForegroundField(SMALL)
        points, latents = _inputs()
        eager = field(points, latents)
        compiled = tf.function(field, jit_compile=True)(points, latents)
        for a, b in zip(eager, compiled):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)

    def test_multiply_adds_cover_every_kernel_entry_once(self):
        # Every kernel entry is used once per sample, except the latent rows: once per ray.
        config = config_lib.ForegroundConfig()
        field = fields.ForegroundField(config)
        field(*_inputs(num_rays=1, num_samples=1, latent_dim=64))
        per_sample, per_ray = field.multiply_adds()
        self.assertEqual(per_sample + per_ray, sum(int(np.prod(k.shape)) for k in field.kernels))
        self.assertEqual(per_ray, 2 * 64 * 256)

    @parameterized.named_parameters(
        ("skip_too_deep", config_lib.ForegroundConfig(depth=4, skip_layer=4), "skip_layer"),
        ("negative_skip", config_lib.ForegroundConfig(depth=4, skip_layer=-1), "skip_layer"),
        ("no_layers", config_lib.ForegroundConfig(depth=0, skip_layer=0), "depth, width >= 1"),
    )
    def test_rejects_bad_config(self, config, message):
        with pytest.raises(ValueError, match=message):
            fields.ForegroundField(config)

    def test_rejects_flat_points(self):
        with pytest.raises(ValueError, match=r"needs points \[N, S, 3\]"):
            fields.ForegroundField(SMALL)(tf.zeros([4, 3]), tf.zeros([4, 2]))

    def test_rejects_per_sample_latents(self):
        with pytest.raises(ValueError, match=r"needs latents \[N, D\]"):
            fields.ForegroundField(SMALL)(tf.zeros([4, 5, 3]), tf.zeros([4, 5, 2]))


class BackgroundFieldTest(parameterized.TestCase):
    @parameterized.parameters((1, 3), (9, 6))
    def test_shapes_and_range(self, num_rays, latent_dim):
        field = fields.BackgroundField(SMALL_BG)
        directions = tf.math.l2_normalize(tf.random.stateless_normal([num_rays, 3], [1, 2]), -1)
        latents = 10.0 * tf.random.stateless_normal([num_rays, latent_dim], [3, 4])
        rgb = field(directions, latents)
        self.assertEqual(tuple(rgb.shape), (num_rays, 3))
        self.assertTrue(bool(tf.reduce_all((rgb >= 0.0) & (rgb <= 1.0))))

    def test_depends_on_direction_and_latent(self):
        field = fields.BackgroundField(SMALL_BG)
        directions = tf.math.l2_normalize(tf.random.stateless_normal([6, 3], [1, 2]), -1)
        latents = tf.random.stateless_normal([6, 4], [3, 4])
        rgb = field(directions, latents)
        self.assertGreater(float(tf.reduce_max(tf.abs(rgb - field(-directions, latents)))), 1e-4)
        self.assertGreater(float(tf.reduce_max(tf.abs(rgb - field(directions, latents + 1)))), 1e-4)

    def test_multiply_adds(self):
        field = fields.BackgroundField(SMALL_BG)
        field(tf.zeros([2, 3]), tf.zeros([2, 4]))
        self.assertEqual(field.multiply_adds(), sum(int(np.prod(k.shape)) for k in field.kernels))

    def test_rejects_per_sample_directions(self):
        with pytest.raises(ValueError, match=r"needs directions \[N, 3\]"):
            fields.BackgroundField(SMALL_BG)(tf.zeros([4, 5, 3]), tf.zeros([4, 2]))

    def test_rejects_negative_depth(self):
        with pytest.raises(ValueError, match="depth >= 0"):
            fields.BackgroundField(config_lib.BackgroundConfig(depth=-1))
