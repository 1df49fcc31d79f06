"""Tests of the built-in synthetic classes (heads, cars, shapes) against their own geometry, the
package's camera maths, the dataset directory and the pipelines that read it."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir, pipeline, record_sources, synthetic
from tfglo.data.synthetic import cameras, cars, heads, primitives, shapes
from tfglo.engine import evaluation
from tfglo.geometry import camera

SIZE = 24
# Small data sets of each class (fast), and each class's module.
CONFIGS = {
    "heads": heads.SyntheticConfig(num_objects=3, image_size=SIZE, eval_views_per_object=2, seed=3),
    "cars": cars.CarsConfig(num_objects=4, image_size=SIZE, seed=3),
    "shapes": shapes.ShapesConfig(
        num_objects=3, image_size=SIZE, train_views_per_object=3, eval_views_per_object=2, seed=3
    ),
}
MODULES = {"heads": heads, "cars": cars, "shapes": shapes}
ALL = [(name,) for name in CONFIGS]

_RECORDS = {}


def _records(name):
    if name not in _RECORDS:
        _RECORDS[name] = list(MODULES[name].generate(CONFIGS[name]))
    return _RECORDS[name]


def _primitives(name, object_id):
    params = MODULES[name].object_params(CONFIGS[name], object_id)
    return params.primitives


def _backproject(record):
    """World points `[H*W, 3]` of each pixel's depth along the rays of `camera.image_rays`."""
    cam = camera.make_camera(record.intrinsics, record.world_to_camera)
    origins, directions = camera.image_rays(cam, record.height, record.width)
    origins = origins.numpy().reshape(-1, 3).astype(np.float64)
    directions = directions.numpy().reshape(-1, 3).astype(np.float64)
    z_per_t = directions @ np.asarray(record.world_to_camera, np.float64)[2, :3]
    return origins + (record.depth.reshape(-1) / z_per_t)[:, None] * directions


def _angles(record):
    return cameras.orbit_angles(cameras.camera_center(record.world_to_camera))


class ClassesTest(parameterized.TestCase):
    """What holds for every class."""

    @parameterized.parameters(*ALL)
    def test_deterministic_per_seed(self, name):
        config = CONFIGS[name]
        again = list(MODULES[name].generate(config))
        for x, y in zip(_records(name), again, strict=True):
            np.testing.assert_array_equal(x.image, y.image)
            np.testing.assert_array_equal(x.mask, y.mask)
            np.testing.assert_array_equal(x.depth, y.depth)
            np.testing.assert_array_equal(x.world_to_camera, y.world_to_camera)
        other = next(MODULES[name].generate(dataclasses.replace(config, seed=4)))
        first = _records(name)[0]
        self.assertGreater(np.abs(other.image.astype(int) - first.image.astype(int)).mean(), 3.0)

    @parameterized.parameters(*ALL)
    def test_object_does_not_depend_on_num_objects(self, name):
        config = CONFIGS[name]
        more = dataclasses.replace(config, num_objects=config.num_objects + 2)
        last = config.num_objects - 1
        ours = [r for r in _records(name) if r.object_id == last]
        theirs = [r for r in MODULES[name].generate(more) if r.object_id == last]
        for x, y in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(x.image, y.image)

    @parameterized.parameters(*ALL)
    def test_records(self, name):
        config = CONFIGS[name]
        recs = _records(name)
        views = config.train_views_per_object + config.eval_views_per_object
        self.assertLen(recs, config.num_objects * views)
        for record in recs:
            self.assertEqual(record.image.shape, (SIZE, SIZE, 3))
            self.assertEqual(record.latent_id, record.object_id)
            self.assertEqual(
                record.split, "train" if record.view_id < config.train_views_per_object else "eval"
            )
            np.testing.assert_array_equal(
                record.intrinsics, camera.default_intrinsics(SIZE, SIZE, config.focal_factor)
            )
            center = cameras.camera_center(record.world_to_camera)
            self.assertAlmostEqual(float(np.linalg.norm(center)), config.camera_distance, places=5)
            if name == "heads":  # keypoints are a heads-only annotation
                self.assertEqual(record.landmarks.shape, (5, 2))
                self.assertEqual(record.keypoints_3d.shape, (5, 3))
            else:
                self.assertIsNone(record.landmarks)
                self.assertIsNone(record.keypoints_3d)

    @parameterized.parameters(*ALL)
    def test_mask_is_exactly_where_depth_is(self, name):
        for record in _records(name):
            self.assertTrue(set(np.unique(record.mask)) <= {0, 255})
            np.testing.assert_array_equal(record.mask == 255, record.depth > 0)
            self.assertTrue(np.all(np.isfinite(record.depth)))
            coverage = (record.mask > 0).mean()
            self.assertGreater(coverage, 0.02, record.source)
            self.assertLess(coverage, 0.9, record.source)

    @parameterized.parameters(*ALL)
    def test_mask_matches_rays_of_the_package_camera(self, name):
        # Trace the float32 rays of `camera.image_rays` independently: the same pixels hit
        # (a ray grazing a silhouette may flip under float32 rounding: allow a handful).
        mismatches = total = 0
        for record in _records(name)[:6]:
            prims = _primitives(name, record.object_id)
            cam = camera.make_camera(record.intrinsics, record.world_to_camera)
            origins, directions = camera.image_rays(cam, SIZE, SIZE)
            hits = primitives.trace(
                prims,
                origins.numpy().reshape(-1, 3).astype(np.float64),
                directions.numpy().reshape(-1, 3).astype(np.float64),
            )
            mismatches += int(np.sum((hits["primitive"] >= 0) != (record.mask.reshape(-1) > 0)))
            total += SIZE * SIZE
        self.assertLessEqual(mismatches, total // 500)

    @parameterized.parameters(*ALL)
    def test_depth_is_on_the_surface_and_projects_back(self, name):
        for record in _records(name):
            prims = _primitives(name, record.object_id)
            hit = record.depth.reshape(-1) > 0
            points = _backproject(record)[hit]
            values = primitives.implicit(prims, points)
            values = np.where(primitives.inside_clip(prims, points), np.abs(values), np.inf)
            self.assertLess(float(values.min(0).max()), 1e-4, record.source)
            self.assertLess(float(np.linalg.norm(points, axis=-1).max()), 1.0)
            # The surface point projects back onto its pixel centre at the recorded depth.
            cam = camera.make_camera(record.intrinsics, record.world_to_camera)
            pixels, depth = camera.project(cam, points.astype(np.float32))
            rows, cols = np.divmod(np.flatnonzero(hit), SIZE)
            np.testing.assert_allclose(pixels.numpy(), np.stack([cols, rows], -1) + 0.5, atol=2e-3)
            np.testing.assert_allclose(depth.numpy(), record.depth.reshape(-1)[hit], rtol=1e-4)

    @parameterized.parameters(*ALL)
    def test_depth_is_the_nearest_surface(self, name):
        for record in _records(name)[:4]:
            prims = _primitives(name, record.object_id)
            hit = record.depth.reshape(-1) > 0
            points = _backproject(record)[hit]
            towards = cameras.camera_center(record.world_to_camera) - points
            towards /= np.linalg.norm(towards, axis=-1, keepdims=True)
            before = primitives.implicit(prims, points + 0.01 * towards)
            solid = ~prims.clipped  # the clipped hair shell is open: its inside shows
            self.assertTrue(np.all(before[solid] > 0.0), record.source)

    @parameterized.parameters(*ALL)
    def test_dataset_metadata(self, name):
        config = CONFIGS[name]
        kind = synthetic.get_class(name)
        self.assertIs(kind.config_type, type(config))
        metadata = json.loads(json.dumps(kind.dataset_metadata(config)))
        self.assertEqual(metadata["synthetic_class"], name)
        self.assertEqual(metadata["scene_radius"], 1.0)
        self.assertEqual(kind.config_type(**metadata["synthetic_config"]), config)
        expected = {"heads": None, "cars": [1.0, 1.0, 1.0], "shapes": [0.85, 0.85, 0.85]}
        self.assertEqual(metadata["constant_background"], expected[name])

    def test_unknown_class(self):
        with pytest.raises(ValueError, match="unknown synthetic class 'trees'"):
            synthetic.get_class("trees")


class ConstantBackgroundTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("cars_white", "cars", {}, (255, 255, 255)),
        ("cars_grey", "cars", dict(background_color=(0.5, 0.5, 0.5)), (128, 128, 128)),
        ("shapes", "shapes", {}, (217, 217, 217)),
    )
    def test_background_pixels_are_the_recorded_colour(self, name, kwargs, expected):
        config = dataclasses.replace(CONFIGS[name], num_objects=2, **kwargs)
        metadata = MODULES[name].dataset_metadata(config)
        np.testing.assert_allclose(
            np.round(np.array(metadata["constant_background"]) * 255), expected
        )
        for record in MODULES[name].generate(config):
            off = record.mask == 0
            np.testing.assert_array_equal(record.image[off], np.tile(expected, [off.sum(), 1]))

    def test_shapes_background_per_scene(self):
        config = shapes.ShapesConfig(
            num_objects=4,
            image_size=16,
            train_views_per_object=2,
            eval_views_per_object=1,
            background="scene",
        )
        self.assertIsNone(shapes.dataset_metadata(config)["constant_background"])
        colours = {}
        for record in shapes.generate(config):
            off = record.image[record.mask == 0]
            self.assertTrue(np.all(off == off[0]))  # plain within a view
            colours.setdefault(record.object_id, set()).add(tuple(off[0]))
        self.assertTrue(all(len(c) == 1 for c in colours.values()))  # one colour per scene
        self.assertGreater(len(set.union(*colours.values())), 2)  # scenes differ


class CarsTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.config = cars.CarsConfig(num_objects=64, image_size=8, eval_views_per_object=3)
        cls.records = list(cars.generate(cls.config))

    def test_training_views_all_around(self):
        yaws = np.sort(np.degrees([_angles(r)[0] for r in self.records if r.split == "train"]))
        self.assertLen(yaws, 64)
        gaps = np.diff(np.concatenate([yaws, [yaws[0] + 360.0]]))
        self.assertGreater(360.0 - gaps.max(), 300.0)  # the azimuths span more than 300 deg
        pitches = np.degrees([_angles(r)[1] for r in self.records])
        self.assertTrue(np.all((pitches >= 5.0 - 1e-3) & (pitches <= 35.0 + 1e-3)))
        self.assertGreater(np.ptp(pitches), 20.0)

    def test_held_out_views_25_to_60_deg_from_the_training_view(self):
        angles = []
        for object_id in range(self.config.num_objects):
            views = [r for r in self.records if r.object_id == object_id]
            self.assertEqual([r.split for r in views], ["train", "eval", "eval", "eval"])
            train = cameras.camera_center(views[0].world_to_camera)
            for view in views[1:]:
                other = cameras.camera_center(view.world_to_camera)
                cosine = train @ other / np.linalg.norm(train) / np.linalg.norm(other)
                angles.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
        angles = np.array(angles)
        self.assertTrue(np.all((angles >= 25.0 - 1e-2) & (angles <= 60.0 + 1e-2)), angles)
        self.assertLess(angles.min(), 30.0)  # the whole range is used
        self.assertGreater(angles.max(), 55.0)

    def test_views_agree_with_view_angles(self):
        for object_id in (0, 5):
            expected = cars.view_angles(self.config, object_id)
            got = [r for r in self.records if r.object_id == object_id]
            for (split, yaw, pitch), record in zip(expected, got, strict=True):
                got_yaw, got_pitch = _angles(record)
                self.assertEqual(split, record.split)
                self.assertAlmostEqual(float(np.cos(got_yaw - yaw)), 1.0, places=6)
                self.assertAlmostEqual(float(got_pitch), pitch, places=5)

    def test_cars_vary_and_fit(self):
        params = [cars.object_params(self.config, k) for k in range(8)]
        for p in params:
            self.assertAlmostEqual(
                float(primitives.bounding_radii(p.primitives).max()), 0.95, places=9
            )
            self.assertLen(p.primitives.kinds, len(cars.PART_NAMES))
        paints = np.stack([p.primitives.colors[0] for p in params])
        self.assertGreater(paints.std(0).max(), 0.1)
        body = cars.PART_NAMES.index("body")
        aspect = [p.primitives.sizes[body, 0] / p.primitives.sizes[body, 2] for p in params]
        self.assertGreater(np.ptp(aspect), 0.03)

    def test_front_is_towards_minus_z(self):
        # Headlights at the front (-z), tail lights at the back, wheels at the bottom (+y).
        p = cars.object_params(self.config, 0).primitives
        z = {name: p.centers[i, 2] for i, name in enumerate(cars.PART_NAMES)}
        y = {name: p.centers[i, 1] for i, name in enumerate(cars.PART_NAMES)}
        self.assertLess(z["headlight_left"], 0.0)
        self.assertGreater(z["taillight_left"], 0.0)
        self.assertGreater(y["wheel_front_left"], y["body"])
        self.assertGreater(y["body"], y["roof"])

    @parameterized.named_parameters(
        ("objects", dict(num_objects=0), "num_objects"),
        ("size", dict(image_size=2), "image_size"),
        ("train_views", dict(train_views_per_object=0), "train_views_per_object"),
        ("distance", dict(camera_distance=1.0), "camera_distance"),
        ("elevation_order", dict(elevation_range_deg=(30.0, 10.0)), "elevation_range_deg"),
        ("elevation_pole", dict(elevation_range_deg=(0.0, 90.0)), "elevation_range_deg"),
        ("angle", dict(eval_angle_range_deg=(60.0, 25.0)), "eval_angle_range_deg"),
        ("angle_over_pole", dict(eval_angle_range_deg=(25.0, 150.0)), "eval_angle_range_deg"),
        ("background", dict(background_color=(1.0, 1.2, 1.0)), "background_color"),
    )
    def test_rejects_bad_config(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            cars.CarsConfig(**kwargs)


class ShapesTest(parameterized.TestCase):
    def test_scenes_have_1_to_4_primitives_of_every_kind(self):
        config = shapes.ShapesConfig(num_objects=40)
        counts, kinds = [], set()
        for k in range(40):
            scene = shapes.object_params(config, k)
            counts.append(scene.primitives.num_primitives)
            kinds.update(scene.kind_names)
            self.assertTrue(np.all(primitives.bounding_radii(scene.primitives) <= 0.97 + 1e-9))
            self.assertLen(scene.kind_names, scene.primitives.num_primitives)
        self.assertEqual(set(counts), {1, 2, 3, 4})
        self.assertEqual(kinds, set(shapes.KINDS))

    def test_primitive_count_and_kinds_follow_the_config(self):
        config = shapes.ShapesConfig(min_primitives=2, max_primitives=2, kinds=("cone",))
        for k in range(5):
            scene = shapes.object_params(config, k)
            self.assertEqual(scene.kind_names, ("cone", "cone"))

    def test_views_share_the_scene(self):
        config = CONFIGS["shapes"]
        recs = _records("shapes")
        for object_id in range(config.num_objects):
            views = [r for r in recs if r.object_id == object_id]
            self.assertLen(views, 5)
            self.assertEqual({r.latent_id for r in views}, {object_id})
            self.assertEqual([r.view_id for r in views], list(range(5)))
            self.assertEqual([r.split for r in views], ["train"] * 3 + ["eval"] * 2)
            # Different viewpoints of one scene, on the upper hemisphere.
            yaws, pitches = zip(*(_angles(r) for r in views))
            self.assertGreater(np.ptp(np.cos(yaws)), 0.2)
            self.assertTrue(np.all(np.degrees(pitches) >= 10.0 - 1e-3))
            self.assertTrue(np.all(np.degrees(pitches) <= 60.0 + 1e-3))

    @parameterized.named_parameters(
        ("counts", dict(min_primitives=3, max_primitives=2), "min_primitives"),
        ("none", dict(min_primitives=0), "min_primitives"),
        ("kind", dict(kinds=("sphere", "torus")), "kinds"),
        ("size", dict(size_range=(0.0, 0.3)), "size_range"),
        ("tilt", dict(max_tilt_deg=120.0), "max_tilt_deg"),
        ("background", dict(background="gradient"), "background"),
        ("eval_views", dict(eval_views_per_object=-1), "eval_views_per_object"),
    )
    def test_rejects_bad_config(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            shapes.ShapesConfig(**kwargs)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> a dataset directory written by the prepare app's writer for each class."""
    root = tmp_path_factory.mktemp("classes")
    paths = {}
    for name, config in CONFIGS.items():
        kind = synthetic.get_class(name)
        source = (kind.generate(config), kind.dataset_metadata(config), [])
        paths[name] = record_sources.write_dataset(source, str(root / name), log_every=0).output
    return paths


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prepared_dataset_reads_back(prepared, name):
    config = CONFIGS[name]
    metadata = dataset_dir.read_metadata(prepared[name])
    self_recs = _records(name)
    self_train = [r for r in self_recs if r.split == "train"]
    assert metadata["num_latents"] == config.num_objects
    assert metadata["splits"] == {
        "train": len(self_train),
        "eval": len(self_recs) - len(self_train),
    }
    # Ray batches: every ray's colour, mask and latent come from a training image.
    rays = pipeline.RayBatchConfig(images_per_batch=2, rays_per_image=64, seed=1)
    batch = next(iter(pipeline.train_dataset(prepared[name], rays)))
    assert batch["rgb"].shape == (128, 3)
    latent_ids = set(batch["latent_id"].numpy().tolist())
    assert latent_ids <= set(range(config.num_objects))
    mask = batch["mask"].numpy()
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    background = metadata["constant_background"]
    if background is not None:  # background rays carry exactly the recorded colour
        np.testing.assert_allclose(
            batch["rgb"].numpy()[mask == 0],
            np.tile(background, [int((mask == 0).sum()), 1]),
            atol=0.5 / 255,
        )
    # Whole held-out images through both evaluation loaders, equal to the generated ones.
    eval_recs = [r for r in self_recs if r.split == "eval"]
    loaded = list(pipeline.eval_dataset(prepared[name]).as_numpy_iterator())
    views = evaluation.load_views(prepared[name], split="eval")
    assert len(loaded) == len(views) == len(eval_recs)
    for record, features, view in zip(eval_recs, loaded, views, strict=True):
        np.testing.assert_array_equal(np.round(features["image"] * 255), record.image)
        np.testing.assert_array_equal(view["depth"], record.depth)
        np.testing.assert_array_equal(view["mask"] > 0, record.depth > 0)
        assert view["object_id"] == features["object_id"] == record.object_id
        evaluation.check_camera_sees_object(view, metadata["scene_radius"])


def test_pipeline_rays_hit_the_sphere_where_the_object_is(prepared):
    # Foreground rays (mask 1) must meet the scene sphere the pipeline bounds rays with.
    rays = pipeline.RayBatchConfig(images_per_batch=4, rays_per_image=256, seed=2)
    batch = next(iter(pipeline.train_dataset(prepared["cars"], rays)))
    foreground = batch["mask"].numpy() > 0.5
    assert foreground.any()
    assert bool(tf.reduce_all(tf.boolean_mask(batch["hit"], foreground)))
