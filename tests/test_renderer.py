"""Analytic tests of tfglo.renderer and tfglo.render_image (small N and S: fast on a CPU)."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.geometry import camera
from tfglo.lolnerf.config import ModelConfig
from tfglo.nerf import image_renderer as render_image
from tfglo.nerf import volume_renderer as renderer
from tfglo.nerf.config import RenderConfig

SPHERE_RADIUS = 0.5  # the analytic opaque sphere, inside a bounding sphere of radius 1
OPAQUE = 1e4
FG_COLOR = (0.9, 0.1, 0.2)
BG_COLOR = (0.2, 0.4, 0.6)
LATENTS_DIM = 2


def constant_field(sigma, color=FG_COLOR):
    """Density sigma and one colour everywhere (the renderer only samples inside its sphere)."""

    def field(points, latents):
        del latents
        density = tf.fill(tf.shape(points)[:-1], tf.constant(sigma, tf.float32))
        return density, tf.broadcast_to(tf.constant(color, tf.float32), tf.shape(points))

    return field


def sphere_field(points, latents, radius=SPHERE_RADIUS, center=(0.0, 0.0, 0.0)):
    """An opaque ball of `radius`: density OPAQUE inside, 0 outside."""
    del latents
    inside = tf.norm(points - tf.constant(center, tf.float32), axis=-1) < radius
    density = tf.where(inside, OPAQUE, 0.0)
    return density, tf.broadcast_to(tf.constant(FG_COLOR, tf.float32), tf.shape(points))


def _rays(origins, directions):
    origins = np.asarray(origins, np.float32)
    directions = np.asarray(directions, np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    latents = np.zeros((len(origins), LATENTS_DIM), np.float32)
    return origins, directions, latents


def _renderer(num_coarse=16, num_fine=16, radius=1.0, perturb=False):
    return renderer.VolumeRenderer(
        RenderConfig(
            num_coarse=num_coarse,
            num_fine=num_fine,
            scene_radius=radius,
            perturb=perturb,
            background_color=BG_COLOR,
        )
    )


def _line_distance(origins, directions):
    """Distance of each ray's line from the world origin (unit directions)."""
    return np.linalg.norm(np.cross(origins, directions), axis=-1)


class ConstantDensityTest(parameterized.TestCase):
    @parameterized.product(
        sigma=(0.1, 1.0, 3.0),
        radius=(1.0, 1.5),
        samples=((8, 0), (16, 16)),
        perturb=(False, True),
    )
    def test_alpha_is_one_minus_exp(self, sigma, radius, samples, perturb):
        volume = _renderer(*samples, radius=radius, perturb=perturb)
        # Rays through the centre (chord 2r) and an off-centre ray (chord 2 sqrt(r^2 - 0.25)).
        origins, directions, latents = _rays(
            [[0, 0, -4], [0.0, 0.0, 3.0], [0.5, 0.0, -4.0]], [[0, 0, 1], [0, 0, -1], [0, 0, 1]]
        )
        out = volume.render_rays(
            constant_field(sigma), None, origins, directions, latents, training=True, seed=[1, 2]
        )
        lengths = np.array([2 * radius, 2 * radius, 2 * np.sqrt(radius**2 - 0.25)])
        expected = 1.0 - np.exp(-sigma * lengths)
        np.testing.assert_allclose(out["alpha"], expected, atol=1e-4)
        np.testing.assert_allclose(out["weights"].numpy().sum(-1), expected, atol=1e-4)
        np.testing.assert_allclose(
            out["rgb_foreground"], expected[:, None] * np.array(FG_COLOR), atol=1e-4
        )
        np.testing.assert_allclose(
            out["rgb"],
            expected[:, None] * np.array(FG_COLOR) + (1 - expected[:, None]) * np.array(BG_COLOR),
            atol=1e-4,
        )

    @parameterized.named_parameters(("coarse_only", 16, 0), ("coarse_and_fine", 8, 24))
    def test_colour_is_integrated_in_depth_order(self, num_coarse, num_fine):
        # Constant sigma, colour ramp c(z) = (z + 1) / 2 in the red channel. Along +z from
        # z = -1 (t = z + 1): red = int_0^2 sigma e^{-sigma t} t / 2 dt
        #   = (1 - e^{-2 sigma} (1 + 2 sigma)) / (2 sigma); along -z the ramp is 1 - t / 2.
        sigma = 1.5

        def ramp(points, latents):
            del latents
            density = tf.fill(tf.shape(points)[:-1], sigma)
            red = 0.5 * (points[..., 2] + 1.0)
            return density, tf.stack([red, tf.zeros_like(red), 1.0 - red], -1)

        origins, directions, latents = _rays([[0, 0, -4], [0, 0, 4]], [[0, 0, 1], [0, 0, -1]])
        out = _renderer(num_coarse, num_fine).render_rays(
            ramp, None, origins, directions, latents, training=False
        )
        alpha = 1.0 - np.exp(-2 * sigma)
        rising = (1.0 - np.exp(-2 * sigma) * (1.0 + 2 * sigma)) / (2 * sigma)
        falling = alpha - rising
        expected = [[rising, 0.0, falling], [falling, 0.0, rising]]
        np.testing.assert_allclose(out["rgb_foreground"], expected, atol=3e-3)

    def test_depth_is_expected_termination_given_termination(self):
        # Constant sigma on [a, a + L]: E[t | t < a + L] = a + 1/sigma - L e^{-sL} / (1 - e^{-sL}).
        sigma, near, length = 1.0, 3.0, 2.0
        volume = _renderer(num_coarse=64, num_fine=0)
        origins, directions, latents = _rays([[0, 0, -4]], [[0, 0, 1]])
        out = volume.render_rays(
            constant_field(sigma), None, origins, directions, latents, training=False
        )
        decay = np.exp(-sigma * length)
        expected = near + 1 / sigma - length * decay / (1 - decay)
        np.testing.assert_allclose(out["depth"], [expected], atol=1e-3)

    def test_samples_are_sorted_and_inside_the_sphere(self):
        volume = _renderer(num_coarse=8, num_fine=8, perturb=True)
        origins, directions, latents = _rays(
            [[0, 0, -4], [0.3, -0.2, -4], [0, 0, 0.2]], [[0, 0, 1], [0, 0.1, 1], [1, 1, 0]]
        )
        out = volume.render_rays(
            constant_field(1.0), None, origins, directions, latents, training=True, seed=[5, 6]
        )
        near, far, _ = camera.intersect_sphere(origins, directions, 1.0)
        z = out["z_values"].numpy()
        self.assertEqual(z.shape, (3, 16))
        self.assertEqual(out["weights"].shape, (3, 16))
        self.assertEqual(out["coarse_weights"].shape, (3, 8))
        self.assertTrue(np.all(np.diff(z, axis=-1) >= 0))
        self.assertTrue(np.all(z >= near.numpy()[:, None] - 1e-6))
        self.assertTrue(np.all(z <= far.numpy()[:, None] + 1e-6))
        np.testing.assert_allclose(near[2], 0.0)  # the third origin is inside the sphere


def _image_rays(size=16):
    intrinsics = camera.default_intrinsics(size, size)  # half-width 1 at the origin (distance 4)
    cam = camera.make_camera(intrinsics, camera.look_at([0.0, 0.0, -4.0]))
    origins, directions = camera.image_rays(cam, size, size)
    return cam, tf.reshape(origins, [-1, 3]).numpy(), tf.reshape(directions, [-1, 3]).numpy()


class OpaqueSphereTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("coarse_only", 32, 0, False),
        ("coarse_and_fine", 16, 16, False),
        ("jittered", 16, 16, True),
    )
    def test_silhouette_depth_and_background(self, num_coarse, num_fine, perturb):
        _, origins, directions = _image_rays()
        latents = np.zeros((len(origins), LATENTS_DIM), np.float32)
        volume = _renderer(num_coarse, num_fine, perturb=perturb)
        out = volume.render_rays(
            sphere_field, None, origins, directions, latents, training=True, seed=[9, 9]
        )
        distance = _line_distance(origins, directions)
        inside = distance < SPHERE_RADIUS - 0.02
        outside = distance > SPHERE_RADIUS + 0.02
        self.assertGreater(inside.sum(), 20)
        self.assertGreater(outside.sum(), 20)
        alpha = out["alpha"].numpy()
        np.testing.assert_allclose(alpha[inside], 1.0, atol=1e-5)
        np.testing.assert_array_equal(alpha[outside], 0.0)
        # Depth: the near intersection with the small sphere, within one coarse sample spacing.
        t_centre = -np.sum(origins * directions, -1)
        surface = t_centre - np.sqrt(np.maximum(SPHERE_RADIUS**2 - distance**2, 0.0))
        near, far, _ = camera.intersect_sphere(origins, directions, 1.0)
        spacing = (far.numpy() - near.numpy()) / num_coarse
        error = np.abs(out["depth"].numpy() - surface)
        self.assertTrue(np.all(error[inside] <= spacing[inside]), error[inside].max())
        np.testing.assert_array_equal(out["depth"].numpy()[outside], 0.0)
        rgb = out["rgb"].numpy()
        np.testing.assert_allclose(rgb[inside], np.broadcast_to(FG_COLOR, rgb[inside].shape), 1e-5)
        np.testing.assert_allclose(rgb[outside], np.broadcast_to(BG_COLOR, rgb[outside].shape))

    def test_background_field_shows_outside(self):
        _, origins, directions = _image_rays(8)
        latents = np.full((len(origins), LATENTS_DIM), 0.25, np.float32)

        def background(dirs, lat):
            return 0.5 * dirs + 0.5 + 0.0 * lat[:, :1] + tf.reduce_mean(lat, -1, keepdims=True)

        out = _renderer().render_rays(
            sphere_field, background, origins, directions, latents, training=False
        )
        outside = _line_distance(origins, directions) > SPHERE_RADIUS + 0.02
        expected = 0.5 * directions + 0.75
        np.testing.assert_allclose(out["rgb"].numpy()[outside], expected[outside], atol=1e-6)

    def test_fine_samples_concentrate_at_the_surface(self):
        num_coarse, num_fine = 16, 32
        origins, directions, latents = _rays(
            [[0, 0, -4], [0.1, 0.2, -3.5], [0.0, -0.3, 4.0]],
            [[0, 0, 1], [-0.02, -0.05, 1], [0, 0.07, -1]],
        )
        out = _renderer(num_coarse, num_fine).render_rays(
            sphere_field, None, origins, directions, latents, training=False
        )
        distance = _line_distance(origins, directions)
        surface = -np.sum(origins * directions, -1) - np.sqrt(SPHERE_RADIUS**2 - distance**2)
        near, far, _ = camera.intersect_sphere(origins, directions, 1.0)
        spacing = (far.numpy() - near.numpy()) / num_coarse
        band = 1.5 * spacing[:, None]  # the surface's coarse stratum and its neighbour
        in_band_all = np.abs(out["z_values"].numpy() - surface[:, None]) <= band
        in_band_coarse = np.abs(out["coarse_z_values"].numpy() - surface[:, None]) <= band
        fine_in_band = in_band_all.sum(-1) - in_band_coarse.sum(-1)
        # Uniform samples would put 3 / 16 of them in the band; importance puts (nearly) all.
        self.assertTrue(np.all(fine_in_band >= 0.9 * num_fine), fine_in_band)


class MaxWeightTest(parameterized.TestCase):
    """The render's "max_weight": a ray's largest composite weight (hardness of the surface)."""

    @parameterized.named_parameters(("coarse_only", 32, 0), ("coarse_and_fine", 16, 16))
    def test_hard_surface_cloud_and_miss(self, num_coarse, num_fine):
        origins, directions, latents = _rays(
            [[0, 0, -4], [0.1, 0.0, -4], [2.0, 0, -4]], [[0, 0, 1], [0, 0, 1], [0, 0, 1]]
        )
        volume = _renderer(num_coarse, num_fine)
        opaque = volume.render_rays(
            sphere_field, None, origins, directions, latents, training=False
        )
        np.testing.assert_allclose(
            opaque["max_weight"], np.max(opaque["weights"].numpy(), -1), rtol=0, atol=0
        )
        # The opaque ball: one sample holds the whole opacity; the ray that misses: 0.
        np.testing.assert_allclose(opaque["max_weight"].numpy()[:2], 1.0, atol=1e-5)
        self.assertEqual(float(opaque["max_weight"][2]), 0.0)
        # A thin uniform cloud (sigma 0.5 over a chord of 2): alpha = 1 - e^-1 ~ 0.63, spread
        # over every sample, so the largest weight is about the first interval's share.
        cloud = volume.render_rays(
            constant_field(0.5), None, origins[:1], directions[:1], latents[:1], training=False
        )
        self.assertAlmostEqual(float(cloud["alpha"][0]), 1.0 - np.exp(-1.0), places=4)
        self.assertLess(float(cloud["max_weight"][0]), 0.1)
        self.assertGreater(float(cloud["max_weight"][0]), 0.0)


class MissAndRobustnessTest(parameterized.TestCase):
    def test_missing_rays_are_background(self):
        origins, directions, latents = _rays(
            [[2.0, 0, -4], [0, 0, 4], [1.0, 0, -4], [0, 1.0, 0]],
            [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 0]],  # miss, behind, tangent, leaving
        )
        out = _renderer(perturb=True).render_rays(
            constant_field(50.0), None, origins, directions, latents, training=True, seed=[1, 1]
        )
        np.testing.assert_array_equal(out["hit"], [False] * 4)
        np.testing.assert_array_equal(out["alpha"], 0.0)
        np.testing.assert_array_equal(out["depth"], 0.0)
        np.testing.assert_array_equal(out["weights"], 0.0)
        np.testing.assert_array_equal(out["rgb_foreground"], 0.0)
        np.testing.assert_allclose(out["rgb"], np.broadcast_to(BG_COLOR, (4, 3)))

    def test_no_nan_anywhere(self):
        rng = np.random.default_rng(0)
        origins = np.concatenate(
            [rng.normal(size=(60, 3)) * 2.0, [[0, 0, 0], [0, 0, 1], [1, 0, 0]]]
        ).astype(np.float32)
        directions = rng.normal(size=(63, 3)).astype(np.float32)
        origins, directions, latents = _rays(origins, directions)
        for sigma in (0.0, 1e-3, 1e3, 1e30):
            volume = _renderer(perturb=True)
            with tf.GradientTape() as tape:
                latents_var = tf.Variable(latents)
                out = volume.render_rays(
                    constant_field(sigma), None, origins, directions, latents_var, training=True
                )
            for key, value in out.items():
                if value.dtype.is_floating:
                    self.assertTrue(np.all(np.isfinite(value.numpy())), f"{key} sigma={sigma}")
            self.assertTrue(np.any(out["hit"]) and not np.all(out["hit"]))
            del tape

    def test_gradients_reach_field_outputs(self):
        origins, directions, latents = _rays(
            [[0, 0, -4], [0.3, 0, -4], [3, 0, -4]], [[0, 0, 1]] * 3
        )
        density_scale = tf.Variable(0.5)
        color = tf.Variable([0.1, 0.5, 0.9])
        seen = []

        def field(points, lat):
            del lat
            density = density_scale * tf.ones(tf.shape(points)[:-1])
            seen.append(points.shape[1])
            return density, tf.broadcast_to(color, tf.shape(points))

        with tf.GradientTape() as tape:
            out = _renderer(8, 8).render_rays(field, None, origins, directions, latents, False)
            loss = tf.reduce_sum(out["rgb"] * tf.constant([1.0, -1.0, 2.0]))
        grad_density, grad_color = tape.gradient(loss, [density_scale, color])
        self.assertEqual(seen, [8, 8])  # the same field on the coarse and the fine pass
        # d rgb / d colour = alpha per ray; d rgb / d sigma = L e^{-sigma L} (colour - bg).
        alpha = out["alpha"].numpy()
        np.testing.assert_allclose(grad_color, alpha.sum() * np.array([1.0, -1.0, 2.0]), 1e-4)
        lengths = np.array([2.0, 2 * np.sqrt(1 - 0.09), 0.0])
        d_alpha = np.sum(lengths * np.exp(-0.5 * lengths))
        expected = d_alpha * np.dot(np.array([0.1, 0.5, 0.9]) - BG_COLOR, [1.0, -1.0, 2.0])
        np.testing.assert_allclose(grad_density, expected, rtol=1e-3)

    def test_gradient_reaches_both_passes(self):
        origins, directions, latents = _rays([[0, 0, -4]], [[0, 0, 1]])
        outputs = []
        tape = tf.GradientTape(persistent=True)

        def field(points, lat):
            del lat
            density = tf.ones(tf.shape(points)[:-1])
            tape.watch(density)
            outputs.append(density)
            return density, tf.ones_like(points)

        with tape:
            out = _renderer(4, 4).render_rays(field, None, origins, directions, latents, False)
            grads = tape.gradient(out["rgb"], outputs)
        self.assertLen(grads, 2)
        for grad in grads:
            self.assertIsNotNone(grad)
            self.assertTrue(np.all(np.abs(grad.numpy()) > 0))

    def test_rejects_bad_config(self):
        with pytest.raises(ValueError, match="num_coarse must be >= 1"):
            renderer.VolumeRenderer(RenderConfig(num_coarse=0))
        with pytest.raises(ValueError, match="scene_radius must be > 0"):
            renderer.VolumeRenderer(RenderConfig(scene_radius=0.0))

    def test_config_round_trip(self):
        volume = _renderer(5, 3)
        again = renderer.VolumeRenderer.from_config(volume.get_config())
        self.assertEqual(again.config, volume.config)


class XlaTest(parameterized.TestCase):
    def test_jit_compile_with_dynamic_rays(self):
        volume = _renderer(8, 8, perturb=True)
        signature = [
            tf.TensorSpec([None, 3]),
            tf.TensorSpec([None, 3]),
            tf.TensorSpec([None, LATENTS_DIM]),
            tf.TensorSpec([2], tf.int32),
        ]

        # Traced once with an unknown N; one function (one XLA compile) for seeded training,
        # evaluation and unseeded training.
        @tf.function(jit_compile=True, input_signature=signature)
        def render_all(o, d, lat, seed):
            def render(training, seed=None):
                return volume.render_rays(sphere_field, None, o, d, lat, training, seed=seed)

            return render(True, seed), render(False), render(True)

        _, origins, directions = _image_rays(8)
        latents = np.zeros((len(origins), LATENTS_DIM), np.float32)
        eager = volume.render_rays(sphere_field, None, origins, directions, latents, False)
        seed = tf.constant([4, 2])
        train_a, compiled, unseeded_a = render_all(origins, directions, latents, seed)
        train_b, _, unseeded_b = render_all(origins, directions, latents, seed)
        for key in ("rgb", "alpha", "depth", "weights", "z_values"):
            np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4, err_msg=key)
        np.testing.assert_array_equal(train_a["z_values"], train_b["z_values"])
        self.assertGreater(np.abs(train_a["z_values"] - compiled["z_values"]).max(), 1e-3)
        # Unseeded training draws a fresh seed per call.
        self.assertGreater(np.abs(unseeded_a["z_values"] - unseeded_b["z_values"]).max(), 1e-4)

    def test_seeded_eager_is_reproducible(self):
        origins, directions, latents = _rays([[0, 0, -4], [0.2, 0, -4]], [[0, 0, 1]] * 2)
        volume = _renderer(8, 8, perturb=True)
        run = lambda seed: volume.render_rays(  # noqa: E731
            sphere_field, None, origins, directions, latents, training=True, seed=seed
        )["z_values"].numpy()
        np.testing.assert_array_equal(run([1, 2]), run([1, 2]))
        self.assertGreater(np.abs(run([1, 2]) - run([2, 2])).max(), 1e-4)


class StandInModel:
    """What render_image needs of a model: `config.render` and `render_rays`."""

    def __init__(self, render_config, center=(0.3, 0.0, 0.0)):
        self.config = ModelConfig(latent_dim=LATENTS_DIM, render=render_config)
        self.renderer = renderer.VolumeRenderer(render_config)
        self.center = center
        self.traced_shapes = []

    def render_rays(self, origins, directions, latents, training=False):
        self.traced_shapes.append(tuple(origins.shape))

        def field(points, lat):
            density, _ = sphere_field(points, lat, radius=0.4, center=self.center)
            # Colour varies with position and latent, so misplaced pixels would show.
            rgb = tf.sigmoid(2.0 * points + lat[:, None, :1])
            return density, rgb

        return self.renderer.render_rays(field, None, origins, directions, latents, training)


class RenderImageTest(parameterized.TestCase):
    def test_chunked_equals_unchunked(self):
        config = RenderConfig(num_coarse=8, num_fine=8, chunk_size=7, background_color=BG_COLOR)
        model = StandInModel(config)
        cam, origins, directions = _image_rays(12)
        latent = tf.constant([0.5, -1.0])
        chunked = render_image.render_image(model, latent, cam, 12, 12)  # 144 = 20 x 7 + 4
        self.assertEqual({shape for shape in model.traced_shapes}, {(7, 3)})  # one static shape
        whole = render_image.render_image(model, latent, cam, 12, 12, chunk_size=144)
        self.assertEqual(chunked["rgb"].shape, (12, 12, 3))
        self.assertEqual(chunked["depth"].shape, (12, 12))
        self.assertEqual(chunked["alpha"].shape, (12, 12))
        for key in ("rgb", "depth", "alpha"):
            np.testing.assert_allclose(chunked[key], whole[key], atol=1e-6, err_msg=key)
        # And both equal one direct render_rays over all rays, pixel for pixel (row major).
        latents = np.tile(latent.numpy(), (144, 1))
        direct = model.render_rays(origins, directions, latents)
        np.testing.assert_allclose(tf.reshape(chunked["rgb"], [-1, 3]), direct["rgb"], atol=1e-6)
        # The ball sits at +x: image right (columns >= 6), vertically centred.
        alpha = chunked["alpha"].numpy()
        self.assertGreater(alpha[:, 6:].sum(), 10 * max(alpha[:, :6].sum(), 0.1))
        np.testing.assert_allclose(alpha[:6].sum(), alpha[6:].sum(), rtol=0.05)

    def test_small_image_uses_one_chunk(self):
        config = RenderConfig(num_coarse=4, num_fine=0, chunk_size=4096)
        model = StandInModel(config)
        cam, _, _ = _image_rays(4)
        out = render_image.render_image(model, [0.0, 0.0], cam, 4, 4)
        self.assertEqual(model.traced_shapes, [(16, 3)])
        self.assertEqual(out["rgb"].shape, (4, 4, 3))

    def test_image_renderer_traces_once_for_many_frames(self):
        model = StandInModel(RenderConfig(num_coarse=4, num_fine=4, chunk_size=10))
        image_renderer = render_image.ImageRenderer(model)
        for yaw in (-0.3, 0.0, 0.3):
            w2c = camera.look_at(camera.orbit_eyes(yaw, 0.0, 4.0))
            cam = camera.make_camera(camera.default_intrinsics(6, 6), w2c)
            out = image_renderer([0.0, 0.0], cam, 6, 6)
            self.assertTrue(np.all(np.isfinite(out["rgb"].numpy())))
        self.assertLen(model.traced_shapes, 1)

    @parameterized.named_parameters(
        ("batched_camera", (2,), [0.0, 0.0], "unbatched camera"),
        ("matrix_latent", (), [[0.0, 0.0]], r"latent must have shape \[D\]"),
    )
    def test_rejects_bad_inputs(self, camera_batch, latent, message):
        model = StandInModel(RenderConfig(num_coarse=4, num_fine=0))
        intrinsics = np.broadcast_to(camera.default_intrinsics(4, 4), camera_batch + (4,))
        w2c = np.broadcast_to(camera.look_at([0.0, 0.0, -4.0]).numpy(), camera_batch + (3, 4))
        with pytest.raises(ValueError, match=message):
            render_image.render_image(model, latent, camera.make_camera(intrinsics, w2c), 4, 4)
