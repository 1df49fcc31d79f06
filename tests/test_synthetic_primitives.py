"""Tests of the shared synthetic parts: exact ray casting, orbit angles, the view renderer."""

import numpy as np
import pytest
from absl.testing import parameterized

from tfglo.data.synthetic import cameras, primitives, rendering, shading
from tfglo.geometry import camera

KINDS = {
    "ellipsoid": primitives.ELLIPSOID,
    "box": primitives.BOX,
    "cylinder": primitives.CYLINDER,
    "cone": primitives.CONE,
}


def _one(kind, sizes, center=(0.0, 0.0, 0.0), rot=None):
    rot = np.eye(3) if rot is None else rot
    return primitives.make_primitives([KINDS[kind]], [center], [rot], [sizes], [[0.5, 0.5, 0.5]])


def _random_scene(seed: int) -> primitives.Primitives:
    """One primitive of every kind, randomly sized, turned and placed in the unit ball."""
    rng = np.random.default_rng(seed)
    kinds, centers, rots, sizes = [], [], [], []
    for kind in KINDS.values():
        kinds.append(kind)
        centers.append(rng.uniform(-0.5, 0.5, 3))
        rots.append(primitives.rotation(*rng.uniform(-np.pi, np.pi, 3)))
        sizes.append(rng.uniform(0.1, 0.35, 3))
    return primitives.make_primitives(kinds, centers, rots, sizes, rng.uniform(0, 1, (4, 3)))


class KnownHitsTest(parameterized.TestCase):
    """Rays along the axes against solids at the origin: the hit distance and normal are known."""

    @parameterized.named_parameters(
        # name, kind, sizes, origin, direction, t, normal
        ("sphere_front", "ellipsoid", (0.5, 0.5, 0.5), (0, 0, -3), (0, 0, 1), 2.5, (0, 0, -1)),
        ("ellipsoid_side", "ellipsoid", (0.2, 0.4, 0.6), (3, 0, 0), (-1, 0, 0), 2.8, (1, 0, 0)),
        ("box_face", "box", (0.3, 0.4, 0.5), (0, 0, -3), (0, 0, 1), 2.5, (0, 0, -1)),
        ("box_top", "box", (0.3, 0.4, 0.5), (0.1, -3, 0.2), (0, 1, 0), 2.6, (0, -1, 0)),
        ("cylinder_side", "cylinder", (0.3, 0.5, 0.3), (0, 0.2, -3), (0, 0, 1), 2.7, (0, 0, -1)),
        ("cylinder_cap", "cylinder", (0.3, 0.5, 0.3), (0.1, 3, 0), (0, -1, 0), 2.5, (0, 1, 0)),
        ("cone_base", "cone", (0.4, 0.5, 0.4), (0.1, 3, 0.1), (0, -1, 0), 2.5, (0, 1, 0)),
        # At y = 0 (halfway up) the cone's radius is 0.2; its side leans by atan(0.4 / 1.0).
        ("cone_side", "cone", (0.4, 0.5, 0.4), (0, 0, -3), (0, 0, 1), 2.8, (0, -0.371, -0.928)),
        ("cone_apex_side", "cone", (0.4, 0.5, 0.4), (0, -3, 0), (0, 1, 0), 2.5, None),
    )
    def test_hit(self, kind, sizes, origin, direction, t, normal):
        hits = primitives.trace(_one(kind, sizes), np.array(origin, float), np.array([direction]))
        self.assertEqual(int(hits["primitive"][0]), 0)
        self.assertAlmostEqual(float(hits["t"][0]), t, places=9)
        if normal is not None:
            np.testing.assert_allclose(hits["normals"][0], normal, atol=2e-3)

    @parameterized.named_parameters(
        ("box_beside", "box", (0.3, 0.4, 0.5), (0.31, 0, -3), (0, 0, 1)),
        ("cylinder_beside", "cylinder", (0.3, 0.5, 0.3), (0.31, 0.0, -3), (0.0, 0.0, 1.0)),
        ("cylinder_below", "cylinder", (0.3, 0.5, 0.3), (0, 0.51, -3), (0, 0, 1)),
        # Beside the cone near its apex, where the base would still be wide.
        ("cone_near_apex", "cone", (0.4, 0.5, 0.4), (0.1, -0.4, -3), (0, 0, 1)),
        ("cone_below_base", "cone", (0.4, 0.5, 0.4), (0, 0.51, -3), (0, 0, 1)),
        ("ellipsoid_above", "ellipsoid", (0.2, 0.4, 0.6), (0, -0.41, -3), (0, 0, 1)),
        ("behind_the_ray", "box", (0.3, 0.4, 0.5), (0, 0, -3), (0, 0, -1)),
    )
    def test_miss(self, kind, sizes, origin, direction):
        hits = primitives.trace(_one(kind, sizes), np.array(origin, float), np.array([direction]))
        self.assertEqual(int(hits["primitive"][0]), -1)
        self.assertFalse(np.isfinite(hits["t"][0]))
        np.testing.assert_array_equal(hits["normals"][0], 0.0)

    def test_rotated_box(self):
        # A cube turned 45 deg about y shows its vertical edge to a ray along z.
        cube = _one("box", (0.5, 0.5, 0.5), rot=primitives.rotation(y=np.pi / 4))
        hits = primitives.trace(cube, np.array([0.0, 0.0, -3.0]), np.array([[0.0, 0.0, 1.0]]))
        self.assertAlmostEqual(float(hits["t"][0]), 3.0 - 0.5 * np.sqrt(2.0), places=9)

    def test_make_primitives_rejects_bad_input(self):
        with pytest.raises(ValueError, match="unknown primitive kinds"):
            primitives.make_primitives([7], [[0, 0, 0]], [np.eye(3)], [[1, 1, 1]], [[0, 0, 0]])
        with pytest.raises(ValueError, match="sizes must be > 0"):
            primitives.make_primitives([0], [[0, 0, 0]], [np.eye(3)], [[1, 0, 1]], [[0, 0, 0]])


class MarchingTest(parameterized.TestCase):
    """The closed-form hits against brute-force marching along random rays (every kind, turned)."""

    @parameterized.parameters(0, 1, 2)
    def test_trace_agrees_with_marching(self, seed):
        prims = _random_scene(seed)
        rng = np.random.default_rng(100 + seed)
        count = 300
        origins = rng.normal(size=(count, 3))
        origins *= 3.0 / np.linalg.norm(origins, axis=-1, keepdims=True)
        targets = rng.uniform(-0.6, 0.6, (count, 3))
        directions = targets - origins
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        hits = primitives.trace(prims, origins, directions)
        hit = hits["primitive"] >= 0
        self.assertGreater(int(hit.sum()), count // 5)
        self.assertGreater(int((~hit).sum()), count // 10)
        # Every hit lies on the surface of the primitive it names, its normal faces the ray.
        values = primitives.implicit(prims, hits["points"][hit])
        on_own = values[hits["primitive"][hit], np.arange(int(hit.sum()))]
        self.assertLess(float(np.abs(on_own).max()), 1e-9)
        np.testing.assert_allclose(np.linalg.norm(hits["normals"][hit], axis=-1), 1.0)
        self.assertTrue(np.all(np.sum(hits["normals"][hit] * directions[hit], -1) <= 1e-9))
        # The ray enters the solid there: just past the hit it is inside.
        past = hits["points"][hit] + 1e-7 * directions[hit]
        values = primitives.implicit(prims, past)[hits["primitive"][hit], np.arange(int(hit.sum()))]
        self.assertTrue(np.all(values < 0.0))
        # No point of any solid lies on the ray before the reported hit (nor anywhere on a miss).
        steps = np.arange(0.0, 6.0, 2e-3)
        for i in range(count):
            points = origins[i] + steps[:, None] * directions[i]
            inside = np.min(primitives.implicit(prims, points), 0) < -1e-3
            first = steps[np.argmax(inside)] if inside.any() else np.inf
            if hit[i]:
                self.assertGreaterEqual(first, hits["t"][i] - 1e-9, f"ray {i}")
            else:
                self.assertFalse(inside.any(), f"ray {i} misses but passes through a solid")

    def test_bounding_radii_hold_every_surface_point(self):
        prims = _random_scene(4)
        rng = np.random.default_rng(5)
        origins = rng.normal(size=(2000, 3))
        origins *= 3.0 / np.linalg.norm(origins, axis=-1, keepdims=True)
        directions = rng.uniform(-0.7, 0.7, (2000, 3)) - origins
        hits = primitives.trace(prims, origins, directions)
        hit = hits["primitive"] >= 0
        radii = primitives.bounding_radii(prims)[hits["primitive"][hit]]
        self.assertTrue(np.all(np.linalg.norm(hits["points"][hit], axis=-1) <= radii + 1e-9))

    def test_ray_plane(self):
        t = primitives.ray_plane(
            np.array([[0.0, 0.0, -2.0], [0.0, 0.0, 0.0]]),
            np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
            np.array([0.0, 0.0, 2.0]),
            1.0,
        )
        np.testing.assert_allclose(t, [2.5, np.inf])


class CamerasTest(parameterized.TestCase):
    @parameterized.parameters((0.0, 0.0), (2.5, 0.3), (-3.0, -0.4), (1.0, 1.2))
    def test_orbit_angles_invert_the_orbit(self, yaw, pitch):
        pose = cameras.orbit_pose(yaw, pitch, 4.0)
        center = cameras.camera_center(pose)
        np.testing.assert_allclose(center, 4.0 * cameras.orbit_direction(yaw, pitch), atol=1e-12)
        got_yaw, got_pitch = cameras.orbit_angles(center)
        self.assertAlmostEqual(float(got_yaw), yaw, places=9)
        self.assertAlmostEqual(float(got_pitch), pitch, places=9)
        tf_center = camera.camera_center(pose.astype(np.float32)).numpy()
        np.testing.assert_allclose(center, tf_center, atol=1e-5)

    @parameterized.parameters(
        (0.0, 0.0, 0.5, 0.0, 0.5), (0.0, 0.0, np.pi, 0.0, np.pi), (1.0, 0.2, 1.0, 0.5, 0.3)
    )
    def test_angle_between(self, yaw_a, pitch_a, yaw_b, pitch_b, expected):
        self.assertAlmostEqual(
            float(cameras.angle_between(yaw_a, pitch_a, yaw_b, pitch_b)), expected, places=7
        )


class RenderViewTest(parameterized.TestCase):
    def test_constant_background_and_exact_ground_truth(self):
        prims = _random_scene(7)
        lighting = shading.Lighting(np.array([0.0, -1.0, 0.0]), 0.5)
        size = 20
        intrinsics = camera.default_intrinsics(size, size, 2.0)
        pose = cameras.orbit_pose(0.4, 0.3, 3.0)
        view = rendering.render_view(prims, lighting, (0.2, 0.4, 0.6), intrinsics, pose, size, size)
        off = view["mask"] == 0
        self.assertTrue(off.any() and (~off).any())
        np.testing.assert_array_equal(view["image"][off], np.tile([51, 102, 153], [off.sum(), 1]))
        np.testing.assert_array_equal(view["mask"] > 0, view["depth"] > 0)
        np.testing.assert_array_equal(view["mask"] > 0, view["primitive"] >= 0)
        # Each pixel is the shaded albedo of its primitive (white light: albedo x [ambient, 1]).
        on = ~off
        albedo = prims.colors[view["primitive"][on]] * 255.0
        ratio = view["image"][on] / np.maximum(albedo, 1e-6)
        bright = albedo > 40
        self.assertTrue(np.all(ratio[bright] >= 0.5 - 0.03) and np.all(ratio[bright] <= 1.03))

    def test_rejects_batched_camera(self):
        with pytest.raises(ValueError, match="unbatched camera"):
            rendering.render_view(
                _random_scene(0),
                shading.Lighting(np.array([0.0, -1.0, 0.0]), 0.5),
                (1.0, 1.0, 1.0),
                np.zeros([2, 4]),
                np.zeros([2, 3, 4]),
                8,
                8,
            )
