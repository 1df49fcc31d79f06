"""The accelerated renderer against the exact one: analytic scenes, a trained model, graph mode.

The analytic scenes are balls and slabs of known density and one colour, defined by a tiny Keras
layer with the ForegroundField call signature that also counts its evaluations, so the work
saved is counted by the field itself, not taken from the renderer's own report.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import infer_testlib
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import metrics
from tfglo.geometry import camera
from tfglo.lolnerf import model as lolnerf
from tfglo.lolnerf import serving
from tfglo.nerf import accelerated_renderer, fields, occupancy_grid
from tfglo.nerf import image_renderer as image_renderer_lib
from tfglo.nerf.config import RenderConfig
from tfglo.nerf.volume_renderer import VolumeRenderer

FG_COLOR = (0.9, 0.1, 0.2)
BG_COLOR = (0.2, 0.4, 0.6)
IMAGE_SIZE = 24


class AnalyticField(keras.layers.Layer):
    """ForegroundField's call signature: one colour, density `sigma` inside a shape, 0 outside.

    shape "ball": |x - c| < radius, with the centre c = the latent's first 3 entries (so latents
    move it); "slab": |x - offset| < thickness / 2 (a wall across the x axis); "everywhere".
    The geometry runs in the layer's compute dtype (bfloat16 under a mixed policy). The layer
    counts the points it evaluates (`evaluations`) and the largest call (`largest_call`).
    """

    def __init__(self, shape="ball", sigma=1e4, radius=0.5, thickness=0.1, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.shape_name, self.sigma, self.radius = shape, sigma, radius
        self.thickness, self.offset = thickness, offset
        self.evaluations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.largest_call = tf.Variable(0, dtype=tf.int64, trainable=False)

    def build(self, points_shape, latents_shape):
        self.built = True

    def call(self, points, latents):
        points = tf.cast(points, self.compute_dtype)
        if self.shape_name == "ball":
            center = tf.cast(latents[:, None, :3], self.compute_dtype)
            inside = tf.norm(points - center, axis=-1) < self.radius
        elif self.shape_name == "slab":
            inside = tf.abs(points[..., 0] - self.offset) < 0.5 * self.thickness
        else:
            inside = tf.ones(tf.shape(points)[:-1], tf.bool)
        density = tf.cast(tf.where(inside, self.sigma, 0.0), tf.float32)
        size = tf.cast(tf.size(density), tf.int64)
        self.evaluations.assign_add(size)
        self.largest_call.assign(tf.maximum(self.largest_call, size))
        rgb = tf.broadcast_to(
            tf.constant(FG_COLOR, tf.float32), tf.concat([tf.shape(density), [3]], 0)
        )
        return density, rgb


def _config(**overrides):
    values = dict(
        num_coarse=32,
        num_fine=32,
        perturb=False,
        background_color=BG_COLOR,
        occupancy_resolution=32,
        chunk_size=1024,
    )
    values.update(overrides)
    return RenderConfig(**values)


def _image_rays(yaw=0.0, pitch=0.0, distance=3.0, size=IMAGE_SIZE, latent=(0.0, 0.0, 0.0)):
    cam = camera.make_camera(
        camera.default_intrinsics(size, size), camera.orbit_cameras(1, distance, (yaw, pitch))[0]
    )
    origins, directions = camera.image_rays(cam, size, size)
    origins, directions = tf.reshape(origins, [-1, 3]), tf.reshape(directions, [-1, 3])
    latents = tf.broadcast_to(tf.constant(latent, tf.float32), [size * size, 3])
    return origins, directions, latents


def _render_both(field, config, origins, directions, latents, exact_config=None):
    """(exact, accelerated, grid) renders of the same rays; the field's counter is reset first."""
    exact = VolumeRenderer(exact_config or config).render_rays(
        field, None, origins, directions, latents, training=False
    )
    renderer = accelerated_renderer.AcceleratedRenderer(config)
    grid = renderer.build_grid(field, latents[0])
    field.evaluations.assign(0)
    fast = renderer.render_rays(field, None, origins, directions, latents, grid)
    return exact, fast, grid


BALLS = (
    ("opaque_ball", 1e4, 0.5, (0.0, 0.0, 0.0), 0.0),
    ("soft_ball", 3.0, 0.5, (0.0, 0.0, 0.0), 0.0),
    ("off_centre_ball_from_the_side", 1e4, 0.5, (0.3, -0.2, 0.1), 0.9),
    ("small_ball", 50.0, 0.15, (0.2, 0.1, 0.0), 0.4),
)


class AnalyticSceneTest(parameterized.TestCase):
    @parameterized.named_parameters(
        (f"{name}_{mode}", *ball, mode)
        for name, *ball in BALLS
        for mode in accelerated_renderer.SAMPLING_MODES
    )
    def test_matches_exact_render_and_analytic_ball(self, sigma, radius, center, yaw, sampling):
        field = AnalyticField(shape="ball", sigma=sigma, radius=radius)
        origins, directions, latents = _image_rays(yaw=yaw, latent=center)
        config = _config(accelerated_sampling=sampling)
        exact, fast, _ = _render_both(field, config, origins, directions, latents)
        # The analytic ball: alpha = 1 - exp(-sigma chord), depth = expected termination.
        offset = origins.numpy() - np.asarray(center, np.float32)
        b = np.sum(offset * directions.numpy(), -1)
        line_distance = np.sqrt(np.maximum(np.sum(offset**2, -1) - b**2, 0.0))
        chord = 2.0 * np.sqrt(np.maximum(radius**2 - line_distance**2, 0.0))
        near = -b - 0.5 * chord
        optical = sigma * chord
        alpha = -np.expm1(-optical)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = near + 1.0 / sigma - chord * np.exp(-optical) / alpha
        # Both renderers are quadratures of the same integral with samples at different places:
        # on average the accelerated one is as close to the truth as the exact one.
        error = {
            name: np.abs(r["alpha"].numpy() - alpha)
            for name, r in (("exact", exact), ("fast", fast))
        }
        self.assertLessEqual(error["fast"].mean(), error["exact"].mean() + 2e-3)
        # Away from the silhouette (one coarse stratum, 2 / 32), "importance" agrees with the
        # exact renderer to the termination threshold in colour and opacity (the same strata,
        # shifted); "dense" is another quadrature (one pass of 64 strata), within its error of a
        # soft edge crossing a stratum (sigma x stratum / 2 ~ 0.05 optical depth at sigma 3).
        clear = np.abs(line_distance - radius) > 0.07
        tolerance = 2e-3 if sampling == "importance" else 0.025
        for key in ("alpha", "rgb"):
            np.testing.assert_allclose(
                fast[key].numpy()[clear], exact[key].numpy()[clear], atol=tolerance, err_msg=key
            )
        solid = clear & (alpha > 0.5)
        self.assertGreater(solid.sum(), 3)
        np.testing.assert_allclose(fast["depth"].numpy()[solid], depth[solid], atol=0.035)
        np.testing.assert_allclose(
            fast["depth"].numpy()[solid], exact["depth"].numpy()[solid], atol=0.035
        )
        # Rays that miss the ball cost nothing; the others far less than the exact 64.
        counts = fast["samples_per_ray"].numpy()
        self.assertEqual(counts.sum(), int(field.evaluations.numpy()))
        np.testing.assert_array_equal(counts[line_distance > radius + 0.2], 0)
        self.assertLess(counts.mean(), 0.35 * 64)

    @parameterized.parameters(*accelerated_renderer.SAMPLING_MODES)
    def test_fully_occupied_scene_is_the_exact_quadrature(self, sampling):
        # Density everywhere, too thin to stop a ray: every sample of the exact renderer is taken
        # at the same place, so the two agree to rounding. "dense" is the exact renderer with
        # all 64 samples stratified and no importance pass.
        field = AnalyticField(shape="everywhere", sigma=0.3)
        config = _config(accelerated_sampling=sampling)
        exact_config = config if sampling == "importance" else _config(num_coarse=64, num_fine=0)
        exact, fast, grid = _render_both(field, config, *_image_rays(), exact_config=exact_config)
        self.assertTrue(bool(tf.reduce_all(grid)))
        for key in ("rgb", "alpha", "depth"):
            np.testing.assert_allclose(fast[key], exact[key], atol=2e-5, err_msg=key)
        hit = exact["hit"].numpy()
        np.testing.assert_array_equal(fast["samples_per_ray"].numpy()[hit], 64)
        np.testing.assert_array_equal(fast["samples_per_ray"].numpy()[~hit], 0)

    def test_empty_scene_evaluates_nothing(self):
        field = AnalyticField(shape="ball", sigma=1e4, radius=0.0)
        exact, fast, grid = _render_both(field, _config(), *_image_rays())
        self.assertFalse(bool(tf.reduce_any(grid)))
        self.assertEqual(int(field.evaluations.numpy()), 0)
        np.testing.assert_allclose(fast["rgb"], exact["rgb"], atol=1e-6)
        np.testing.assert_array_equal(fast["depth"], 0.0)

    def test_several_grids_in_one_batch(self):
        # Two latents (ball centres) in one batch, each ray with its own grid.
        field = AnalyticField(shape="ball", sigma=1e4, radius=0.3)
        config = _config()
        renderer = accelerated_renderer.AcceleratedRenderer(config)
        first, second = _image_rays(latent=(0.4, 0, 0)), _image_rays(latent=(-0.4, 0, 0))
        grids = renderer.build_grids(field, tf.constant([[0.4, 0, 0], [-0.4, 0, 0]]))
        self.assertEqual(grids.shape, (2, 32, 32, 32))
        batch = [tf.concat([a, b], 0) for a, b in zip(first, second)]
        index = tf.repeat([0, 1], IMAGE_SIZE * IMAGE_SIZE)
        together = renderer.render_rays(field, None, *batch, grids, grid_index=index)
        for part, rays, grid in ((0, first, grids[0]), (1, second, grids[1])):
            alone = renderer.render_rays(field, None, *rays, grid)
            rows = slice(part * IMAGE_SIZE**2, (part + 1) * IMAGE_SIZE**2)
            np.testing.assert_allclose(together["rgb"][rows], alone["rgb"], atol=1e-6)
        with self.assertRaisesRegex(ValueError, "grid_index"):
            renderer.render_rays(field, None, *batch, grids)


class OccupancyGridTest(parameterized.TestCase):
    @parameterized.parameters(0.13, 0.37, 0.5, 0.81)
    def test_slab_one_cell_thick_is_kept(self, fraction):
        # A wall exactly one cell thick, at any offset against the cells, covers a plane of cell
        # centres; after dilation the grid holds it 3 cells thick, and the render sees it.
        resolution, radius = 32, 1.0
        cell = 2.0 * radius / resolution
        offset = -radius + (17 + fraction) * cell
        field = AnalyticField(shape="slab", sigma=80.0, thickness=cell, offset=offset)
        config = _config(occupancy_resolution=resolution)
        renderer = accelerated_renderer.AcceleratedRenderer(config)
        grid = renderer.build_grid(field, tf.zeros([3])).numpy()
        occupied_planes = np.flatnonzero(grid.any(axis=(1, 2)))
        self.assertTrue(grid[occupied_planes].all(axis=(1, 2)).all())
        self.assertLen(occupied_planes, 3)
        # Rays across the wall (along +x, off-centre in y and z).
        ys, zs = np.meshgrid(np.linspace(-0.6, 0.6, 7), np.linspace(-0.6, 0.6, 7))
        origins = np.stack([np.full(ys.size, -3.0), ys.ravel(), zs.ravel()], -1)
        directions = np.tile([[1.0, 0.0, 0.0]], (ys.size, 1))
        latents = np.zeros((ys.size, 3))
        fast = renderer.render_rays(field, None, origins, directions, latents, grid)
        # Analytic opacity 1 - exp(-80 cell) = 0.993; the march's 1/64 strata resolve a wall of
        # two strata to within a few percent, so: kept, and nearly opaque on every ray.
        self.assertGreater(float(tf.reduce_min(fast["alpha"])), 0.95)
        np.testing.assert_allclose(fast["depth"], 3.0 + offset, atol=cell)

    def test_without_dilation_only_the_covered_plane(self):
        cell = 2.0 / 32
        field = AnalyticField(shape="slab", sigma=80.0, thickness=cell, offset=0.37 * cell)
        grid = occupancy_grid.build_grid(field, tf.zeros([3]), 32, 1.0, 0.01, 0, 10_000).numpy()
        self.assertLen(np.flatnonzero(grid.any(axis=(1, 2))), 1)

    def test_chunks_bound_the_field_calls(self):
        field = AnalyticField(shape="ball", sigma=1e4)
        grid = occupancy_grid.build_grid(field, tf.zeros([3]), 16, 1.0, 0.01, 1, 1000)
        self.assertLessEqual(int(field.largest_call.numpy()), 1000)
        rows_per_chunk = 1000 // 16  # rows of 16 cells along z
        chunks = -(-(16 * 16) // rows_per_chunk)
        self.assertEqual(int(field.evaluations.numpy()), chunks * rows_per_chunk * 16)
        # The ball of radius 0.5 (cells up to 0.5 + 1.5 cells from the centre after dilation).
        centers = occupancy_grid.cell_centers(16, 1.0).numpy()
        distance = np.linalg.norm(centers, axis=-1)
        self.assertTrue(grid.numpy()[distance < 0.5].all())
        self.assertFalse(grid.numpy()[distance > 0.5 + 2.0 * np.sqrt(3) / 16 * 1.01].any())

    @parameterized.named_parameters(
        ("resolution", dict(occupancy_resolution=1), "occupancy_resolution"),
        ("threshold", dict(occupancy_threshold=-1.0), "occupancy_threshold"),
        ("dilation", dict(occupancy_dilation=-1), "occupancy_dilation"),
        ("termination", dict(termination_threshold=1.0), "termination_threshold"),
        ("group", dict(march_group_size=0), "march_group_size"),
        ("sampling", dict(accelerated_sampling="uniform"), "accelerated_sampling"),
        ("coarse", dict(num_coarse=0), "num_coarse"),
    )
    def test_rejects_bad_settings(self, overrides, message):
        with self.assertRaisesRegex(ValueError, message):
            accelerated_renderer.AcceleratedRenderer(_config(**overrides))


class EarlyTerminationTest(parameterized.TestCase):
    def test_termination_cuts_field_evaluations(self):
        field = AnalyticField(shape="ball", sigma=1e4)
        rays = _image_rays()
        counts = {}
        renders = {}
        for name, threshold in (("none", 0.0), ("default", 1e-3)):
            config = _config(termination_threshold=threshold)
            renderer = accelerated_renderer.AcceleratedRenderer(config)
            grid = renderer.build_grid(field, rays[2][0])
            field.evaluations.assign(0)
            renders[name] = renderer.render_rays(field, None, *rays, grid)
            counts[name] = int(field.evaluations.numpy())
            self.assertEqual(counts[name], int(tf.reduce_sum(renders[name]["samples_per_ray"])))
        # Without termination a ray through the ball samples its whole occupied chord; with it,
        # a few groups of `march_group_size` samples.
        self.assertLess(counts["default"], 0.45 * counts["none"])
        for key in ("rgb", "alpha"):
            np.testing.assert_allclose(renders["default"][key], renders["none"][key], atol=1e-3)


class GraphModeTest(parameterized.TestCase):
    # Default suite time: SavedModelTest's fresh-process test covers the exported path.
    @pytest.mark.slow
    def test_tf_function_with_input_signature_and_saved_model(self):
        _, model = infer_testlib.trained()
        config = model.config.render
        renderer = accelerated_renderer.AcceleratedRenderer(config)
        latent_dim = model.config.latent_dim

        module = tf.Module()
        module.model = model

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32),
                tf.TensorSpec([None, 3], tf.float32),
                tf.TensorSpec([latent_dim], tf.float32),
            ]
        )
        def render(origins, directions, latent):
            grid = renderer.build_grid(model.foreground, latent)
            latents = tf.broadcast_to(latent[None], [tf.shape(origins)[0], latent_dim])
            out = renderer.render_rays(
                model.foreground, model.background, origins, directions, latents, grid
            )
            return {k: out[k] for k in ("rgb", "alpha", "depth", "samples_per_ray")}

        module.render = render
        origins, directions, _ = _image_rays(size=16, distance=4.0)
        latent = model.latent_table.embeddings[0]
        grid = renderer.build_grid(model.foreground, latent)
        latents = tf.broadcast_to(latent[None], [16 * 16, latent_dim])
        eager = renderer.render_rays(
            model.foreground, model.background, origins, directions, latents, grid
        )
        graph = render(origins, directions, latent)
        with tempfile.TemporaryDirectory() as export_dir:
            tf.saved_model.save(module, export_dir, signatures={"render": render})
            loaded = tf.saved_model.load(export_dir)
            served = loaded.signatures["render"](
                origins=origins, directions=directions, latent=latent
            )
        for key in ("rgb", "alpha", "depth"):
            np.testing.assert_allclose(graph[key], eager[key], atol=1e-5, err_msg=key)
            np.testing.assert_allclose(served[key], eager[key], atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(served["samples_per_ray"], eager["samples_per_ray"])


class TrainedModelTest(parameterized.TestCase):
    """A tiny LOLNeRF trained on synthetic heads (infer_testlib, shared by the inference tests)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = infer_testlib.trained()
        cls.views = [
            r for r in infer_testlib.dataset_dir.iterate_records(cls.path) if r.split == "eval"
        ]

    def test_held_out_views_match_exact_render(self):
        exact = image_renderer_lib.ImageRenderer(self.model, accelerate=False)
        fast = image_renderer_lib.ImageRenderer(self.model, accelerate=True)
        table = self.model.latent_table.embeddings
        psnr_diffs, agreement, samples = [], [], []
        for record in self.views:
            cam = camera.make_camera(record.intrinsics, record.world_to_camera)
            latent = table[record.latent_id]
            a = exact(latent, cam, record.height, record.width)
            b = fast(latent, cam, record.height, record.width)
            target = record.image.astype(np.float32) / 255.0
            psnr_diffs.append(
                metrics.psnr(a["rgb"].numpy(), target) - metrics.psnr(b["rgb"].numpy(), target)
            )
            agreement.append(metrics.psnr(b["rgb"].numpy(), a["rgb"].numpy()))
            samples.append(b["samples_per_ray"].numpy().mean() / a["samples_per_ray"].numpy()[0])
        self.assertLess(max(abs(d) for d in psnr_diffs), 0.1)
        self.assertGreater(min(agreement), 40.0)
        self.assertLess(np.mean(samples), 0.6)

    def test_chunk_without_occupied_cells(self):
        # The real ForegroundField is never called on an empty batch (it cannot reshape one).
        config = self.model.config.render
        renderer = accelerated_renderer.AcceleratedRenderer(config)
        empty = tf.zeros([config.occupancy_resolution] * 3, tf.bool)
        origins, directions, _ = _image_rays(size=4, distance=4.0)
        latents = tf.broadcast_to(self.model.latent_table.embeddings[:1], [16, 8])
        out = tf.function(renderer.render_rays)(
            self.model.foreground, self.model.background, origins, directions, latents, empty
        )
        np.testing.assert_array_equal(out["samples_per_ray"], 0)
        np.testing.assert_array_equal(out["alpha"], 0.0)
        np.testing.assert_allclose(
            out["rgb"], self.model.background(directions, latents), atol=1e-6
        )

    def test_grid_cache_follows_latent_and_weights(self):
        renderer = image_renderer_lib.ImageRenderer(self.model, accelerate=True)
        table = self.model.latent_table.embeddings
        first = renderer.grid(table[0])
        self.assertIs(renderer.grid(table[0]), first)
        self.assertIsNot(renderer.grid(table[1]), first)
        kernel = self.model.foreground.kernels[0]
        saved = kernel.numpy()
        try:
            kernel.assign(saved * 1.01)
            self.assertIsNot(renderer.grid(table[0]), first)
        finally:
            kernel.assign(saved)

    def test_accelerate_needs_the_fields(self):
        class RaysOnly:
            def render_rays(self, origins, directions, latents, training=False):
                raise AssertionError("not called")

        with self.assertRaisesRegex(ValueError, "foreground"):
            image_renderer_lib.ImageRenderer(RaysOnly(), accelerate=True)


class AnalyticModel:
    """The least a model needs for `ImageRenderer` (either path): config.render, the fields."""

    def __init__(self, config: RenderConfig):
        self.config = type("Config", (), {"render": config})()
        self.foreground = AnalyticField(shape="ball", sigma=1e4)
        self.background = None
        self._exact = VolumeRenderer(config)

    def render_rays(self, origins, directions, latents, training=False):
        return self._exact.render_rays(
            self.foreground, None, origins, directions, latents, training=training
        )


class ChunkedMemoryTest(parameterized.TestCase):
    def test_field_calls_do_not_grow_with_the_image(self):
        # Memory flat in resolution: the largest field call (points evaluated at once) is the
        # same for an 8 x 8 and a 32 x 32 view, bounded by one chunk of rays and by the grid's
        # points per call, on both paths.
        config = _config(chunk_size=64, num_coarse=16, num_fine=16, occupancy_resolution=16)
        model = AnalyticModel(config)
        cam8, cam32 = (
            camera.make_camera(
                camera.default_intrinsics(size, size), camera.orbit_cameras(1, 3.0, (0, 0))[0]
            )
            for size in (8, 32)
        )
        latent = tf.zeros([3])
        for accelerate in (False, True):
            renderer = image_renderer_lib.ImageRenderer(model, accelerate=accelerate)
            largest = []
            for cam, size in ((cam8, 8), (cam32, 32)):
                if accelerate:
                    renderer.clear_grids()
                model.foreground.largest_call.assign(0)
                out = renderer(latent, cam, size, size)
                largest.append(int(model.foreground.largest_call.numpy()))
                # The ball covers the image centre: the render is not empty.
                self.assertGreater(float(out["alpha"][size // 2, size // 2]), 0.99)
            self.assertEqual(largest[0], largest[1], f"accelerate={accelerate}")
            self.assertLessEqual(largest[1], 64 * 32, f"accelerate={accelerate}")


class SavedModelTest(parameterized.TestCase):
    """The exported render signature, accelerated in the graph, against the exact renderer."""

    def test_fresh_process_render_matches_the_exact_render(self):
        path, model = infer_testlib.trained()
        self.assertTrue(model.config.render.accelerate)  # the default
        views = [r for r in infer_testlib.dataset_dir.iterate_records(path) if r.split == "eval"]
        latents = np.stack([model.latent_table.embeddings[r.latent_id].numpy() for r in views])
        intrinsics = np.stack(
            [camera.intrinsics_matrix(np.float32(r.intrinsics)).numpy() for r in views]
        )
        poses = np.stack([np.float32(r.world_to_camera) for r in views])
        size = views[0].height
        # Views share latents (2 per object): the signature builds one grid per distinct one.
        self.assertLess(len(np.unique(latents, axis=0)), len(views))
        with tempfile.TemporaryDirectory() as tmp:
            export_dir = f"{tmp}/1"
            module = serving.export_model(model, export_dir)
            self.assertTrue(module.accelerate)
            np.savez(
                f"{tmp}/inputs.npz", latent=latents, intrinsics=intrinsics, world_to_camera=poses
            )
            script = (
                "import sys, numpy as np, tensorflow as tf\n"
                "loaded = tf.saved_model.load(sys.argv[1])\n"
                "inputs = dict(np.load(sys.argv[2]))\n"
                f"out = loaded.signatures['render'](height=tf.constant({size}), "
                f"width=tf.constant({size}), **{{k: tf.constant(v) for k, v in inputs.items()}})\n"
                "np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})\n"
            )
            subprocess.run(
                [sys.executable, "-c", script, export_dir, f"{tmp}/inputs.npz", f"{tmp}/out.npz"],
                check=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            )
            served = dict(np.load(f"{tmp}/out.npz"))
            info = json.loads(
                (pathlib.Path(export_dir) / "assets.extra/tfglo_export.json").read_text()
            )
        self.assertTrue(info["accelerate"])
        exact = image_renderer_lib.ImageRenderer(model, accelerate=False)
        fast = image_renderer_lib.ImageRenderer(model, accelerate=True)
        for i, record in enumerate(views):
            cam = camera.make_camera(record.intrinsics, record.world_to_camera)
            a = exact(latents[i], cam, size, size)
            b = fast(latents[i], cam, size, size)
            target = record.image.astype(np.float32) / 255.0
            diff = metrics.psnr(a["rgb"].numpy(), target) - metrics.psnr(served["rgb"][i], target)
            self.assertLess(abs(diff), 0.1, f"view {i}")
            self.assertGreater(metrics.psnr(served["rgb"][i], a["rgb"].numpy()), 40.0)
            # The signature is the in-memory accelerated renderer, in the graph.
            np.testing.assert_allclose(served["rgb"][i], b["rgb"], atol=1e-4)
            np.testing.assert_allclose(served["alpha"][i], b["alpha"], atol=1e-4)
            np.testing.assert_allclose(served["depth"][i], b["depth"], atol=1e-3)

    def test_exact_module_when_not_accelerated(self):
        _, model = infer_testlib.trained()
        config = dataclasses.replace(
            model.config, render=dataclasses.replace(model.config.render, accelerate=False)
        )
        exact = lolnerf.LOLNeRF(config)
        exact.build_all()
        self.assertFalse(serving.serving_module(exact, serving.ExportConfig()).accelerate)
        self.assertTrue(serving.serving_module(model, serving.ExportConfig()).accelerate)


class RenderBenchmarkTest(parameterized.TestCase):
    def test_quick_lines_for_a_trained_run_and_the_default_model(self):
        from tfglo import bench
        from tfglo.lolnerf import benchmarks

        path, model = infer_testlib.trained()
        with tempfile.TemporaryDirectory() as tmp:
            run = infer_testlib.save_run(model, path, f"{tmp}/run")
            kwargs = dict(bench.quick_kwargs("render"), demo_run=str(run))
            lines = benchmarks.benchmark_render(10.0, **kwargs)
            skipped = benchmarks.benchmark_render(10.0, **bench.quick_kwargs("render"))[0]
        self.assertIn("model=demo skipped=", skipped)
        self.assertLen(lines, 4)  # (demo, default) x batches (1, 2), size 8
        for line, name in zip(lines, ("demo", "demo", "default", "default")):
            values = dict(item.split("=", 1) for item in line.split()[1:])
            self.assertEqual(values["model"], name)
            self.assertEqual(values["size"], "8")
            for key in ("brute_s", "fast_s", "samples_per_ray", "speedup", "ratio"):
                self.assertGreater(float(values[key]), 0.0, key)
            self.assertLess(abs(float(values["psnr_diff"])), 0.1, line)
            self.assertEqual(values["trained"], "1" if name == "demo" else "0")


class MixedPrecisionTest(parameterized.TestCase):
    def test_analytic_field_in_bfloat16_renders_close(self):
        policy = fields.dtype_policy("mixed_bfloat16")
        rays = _image_rays()
        exact, fast32, _ = _render_both(AnalyticField(sigma=1e4), _config(), *rays)
        _, fast16, _ = _render_both(AnalyticField(sigma=1e4, dtype=policy), _config(), *rays)
        # bfloat16 moves the ball's edge by up to ~2^-9 of its radius: a few edge pixels.
        self.assertLess(np.mean(np.abs(fast16["alpha"] - fast32["alpha"])), 0.01)
        self.assertGreater(metrics.psnr(fast16["rgb"].numpy(), exact["rgb"].numpy()), 30.0)

    def test_lolnerf_in_mixed_precision_matches_float32(self):
        _, model = infer_testlib.trained()
        config = model.config
        mixed_config = dataclasses.replace(
            config, render=dataclasses.replace(config.render, precision="mixed_bfloat16")
        )
        mixed = lolnerf.LOLNeRF(mixed_config)
        mixed.build_all()
        mixed.set_weights(model.get_weights())
        self.assertEqual(mixed.foreground.compute_dtype, "bfloat16")
        self.assertEqual(mixed.foreground.kernels[0].dtype, "float32")
        cam = camera.make_camera(
            camera.default_intrinsics(16, 16), camera.orbit_cameras(1, 4.0, (0, 0))[0]
        )
        latent = model.latent_table.embeddings[0]
        for accelerate in (False, True):
            a = image_renderer_lib.ImageRenderer(model, accelerate=accelerate)(latent, cam, 16, 16)
            b = image_renderer_lib.ImageRenderer(mixed, accelerate=accelerate)(latent, cam, 16, 16)
            self.assertEqual(b["rgb"].dtype, tf.float32)
            self.assertGreater(metrics.psnr(b["rgb"].numpy(), a["rgb"].numpy()), 30.0)


if __name__ == "__main__":
    pytest.main([__file__])
