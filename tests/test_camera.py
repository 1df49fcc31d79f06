"""Tests of tfglo.camera against hand-worked geometry (OpenCV convention, pixel centres +0.5)."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.geometry import camera


def _rotation_y(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], np.float32)


def _rotation_x(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], np.float32)


def _world_to_camera(rotation, translation):
    return np.concatenate(
        [np.asarray(rotation, np.float32), np.asarray(translation, np.float32)[:, None]], 1
    )


# (name, intrinsics fx fy cx cy, world_to_camera): frontal, off-centre principal points,
# non-square pixels, rotated and translated cameras.
_CAMERAS = (
    ("frontal", [32.0, 32.0, 8.0, 8.0], _world_to_camera(np.eye(3), [0.0, 0.0, 4.0])),
    ("off_centre", [50.0, 50.0, 3.0, 13.0], _world_to_camera(np.eye(3), [0.0, 0.0, 4.0])),
    ("anisotropic", [40.0, 25.0, 10.5, 6.25], _world_to_camera(np.eye(3), [0.2, -0.1, 3.0])),
    (
        "yawed",
        [32.0, 32.0, 9.0, 7.0],
        _world_to_camera(_rotation_y(0.7), [0.1, 0.2, 4.5]),
    ),
    (
        "yawed_pitched",
        [60.0, 55.0, 16.0, 4.0],
        _world_to_camera(_rotation_x(-0.4) @ _rotation_y(2.5), [-0.3, 0.5, 5.0]),
    ),
)


class RayProjectionTest(parameterized.TestCase):
    @parameterized.named_parameters(*_CAMERAS)
    def test_ray_projects_back_onto_its_pixel_centre(self, intrinsics, world_to_camera):
        cam = camera.make_camera(intrinsics, world_to_camera)
        pixels = tf.reshape(camera.pixel_centers(5, 7), [-1, 2])  # every centre of a 7x5 image
        origins, directions = camera.rays_from_pixels(cam, pixels)
        np.testing.assert_allclose(tf.norm(directions, axis=-1), 1.0, atol=1e-6)
        for distance in (0.5, 3.0, 7.0):
            points = origins + distance * directions
            projected, depth = camera.project(cam, points)
            np.testing.assert_allclose(projected, pixels, atol=2e-4)
            self.assertTrue(np.all(depth.numpy() > 0.0))

    @parameterized.named_parameters(*_CAMERAS)
    def test_origin_is_camera_centre(self, intrinsics, world_to_camera):
        cam = camera.make_camera(intrinsics, world_to_camera)
        origins, _ = camera.rays_from_pixels(cam, [[0.5, 0.5], [3.5, 2.5]])
        rotation, translation = world_to_camera[:, :3], world_to_camera[:, 3]
        centre = -rotation.T @ translation
        np.testing.assert_allclose(origins, np.stack([centre, centre]), atol=1e-5)
        # The camera centre maps to the camera-frame origin.
        np.testing.assert_allclose(rotation @ centre + translation, 0.0, atol=1e-5)

    def test_principal_point_ray_is_optical_axis(self):
        intrinsics, world_to_camera = _CAMERAS[4][1:]
        cam = camera.make_camera(intrinsics, world_to_camera)
        _, directions = camera.rays_from_pixels(cam, [[intrinsics[2], intrinsics[3]]])
        # World direction of camera +z is the third row of R.
        np.testing.assert_allclose(directions[0], world_to_camera[2, :3], atol=1e-6)

    def test_batched_cameras_broadcast(self):
        intrinsics = np.stack([np.asarray(c[1], np.float32) for c in _CAMERAS])
        transforms = np.stack([c[2] for c in _CAMERAS])
        cam = camera.make_camera(intrinsics, transforms)
        pixels = tf.reshape(camera.pixel_centers(3, 4), [-1, 2])
        origins, directions = camera.rays_from_pixels(cam, pixels[None])
        self.assertEqual(directions.shape, (len(_CAMERAS), 12, 3))
        for i, (_, k, w2c) in enumerate(_CAMERAS):
            single = camera.make_camera(k, w2c)
            o, d = camera.rays_from_pixels(single, pixels)
            np.testing.assert_allclose(directions[i], d, atol=1e-6)
            np.testing.assert_allclose(origins[i], o, atol=1e-5)

    def test_image_rays_row_major_pixel_centres(self):
        cam = camera.make_camera([10.0, 10.0, 2.0, 1.5], _world_to_camera(np.eye(3), [0, 0, 2]))
        _, directions = camera.image_rays(cam, 3, 4)
        self.assertEqual(directions.shape, (3, 4, 3))
        # Pixel (row 0, col 0) has centre (0.5, 0.5): camera direction (-0.15, -0.1, 1).
        expected = np.array([-0.15, -0.1, 1.0]) / np.linalg.norm([-0.15, -0.1, 1.0])
        np.testing.assert_allclose(directions[0, 0], expected, atol=1e-6)
        # Pixel (row 2, col 3) has centre (3.5, 2.5): camera direction (0.15, 0.1, 1).
        np.testing.assert_allclose(directions[2, 3], expected * [-1, -1, 1], atol=1e-6)

    def test_pixel_centers(self):
        centres = camera.pixel_centers(2, 3).numpy()
        self.assertEqual(centres.shape, (2, 3, 2))
        np.testing.assert_array_equal(centres[0, 0], [0.5, 0.5])
        np.testing.assert_array_equal(centres[1, 2], [2.5, 1.5])


class PerspectiveOpsTest(parameterized.TestCase):
    """camera.py delegates to tensorflow-graphics' perspective ops: check them by hand."""

    def test_project_matches_hand_formula(self):
        rng = np.random.default_rng(0)
        points_cam = rng.uniform([-1, -1, 0.5], [1, 1, 5], size=(20, 3)).astype(np.float32)
        fx, fy, cx, cy = 40.0, 30.0, 11.0, 7.5
        cam = camera.make_camera([fx, fy, cx, cy], _world_to_camera(np.eye(3), [0, 0, 0]))
        pixels, depth = camera.project(cam, points_cam)
        x, y, z = points_cam.T
        expected = np.stack([fx * x / z + cx, fy * y / z + cy], -1)
        np.testing.assert_allclose(pixels, expected, rtol=1e-5)
        np.testing.assert_allclose(depth, z, rtol=1e-6)

    def test_project_behind_camera_gives_negative_depth(self):
        cam = camera.make_camera([10.0, 10.0, 5.0, 5.0], _world_to_camera(np.eye(3), [0, 0, 0]))
        pixels, depth = camera.project(cam, [[1.0, 0.0, -2.0]])
        np.testing.assert_allclose(depth, [-2.0])
        np.testing.assert_allclose(pixels, [[5.0 - 5.0, 5.0]], atol=1e-5)  # x' = 10*1/-2 + 5

    def test_tfg_ray_matches_hand_formula(self):
        from tensorflow_graphics.rendering.camera import perspective

        pixels = np.array([[0.5, 0.5], [12.25, 3.0], [7.0, 9.5]], np.float32)
        focal = np.array([40.0, 30.0], np.float32)
        principal = np.array([11.0, 7.5], np.float32)
        rays = perspective.ray(pixels, focal, principal).numpy()
        expected = np.concatenate([(pixels - principal) / focal, np.ones((3, 1), np.float32)], -1)
        np.testing.assert_allclose(rays, expected, rtol=1e-6)

    def test_project_translated_rotated_point(self):
        # Hand-worked: camera yawed by 90 degrees (R = Ry(pi/2)), t = (0, 0, 4).
        # Ry(pi/2) maps world (1, 0, 0) -> (0, 0, -1), world (0, 0, 1) -> (1, 0, 0).
        # World point (-2, 0.5, 1): R p = (1, 0.5, 2), + t = (1, 0.5, 6).
        w2c = _world_to_camera(_rotation_y(np.pi / 2), [0.0, 0.0, 4.0])
        cam = camera.make_camera([60.0, 60.0, 16.0, 16.0], w2c)
        pixels, depth = camera.project(cam, [[-2.0, 0.5, 1.0]])
        np.testing.assert_allclose(depth, [6.0], atol=1e-5)
        np.testing.assert_allclose(pixels, [[16.0 + 10.0, 16.0 + 5.0]], atol=1e-4)


class OpenGLConversionTest(parameterized.TestCase):
    # Blender/OpenGL camera-to-world matrices (camera looks along its -z, +y up).
    @parameterized.named_parameters(
        # Camera at (0, 0, 4) with identity rotation looks down world -z, world +y up.
        # World point (1, 0.5, 0) -> GL camera (1, 0.5, -4) -> OpenCV (1, -0.5, 4)
        # -> pixel (32 + 100 * 1/4, 24 + 100 * -0.5/4) = (57, 11.5).
        ("identity_rotation", np.eye(3), [0.0, 0.0, 4.0], [1.0, 0.5, 0.0]),
        # Blender's usual camera: rotated +90 degrees about x (columns x=(1,0,0), y=(0,0,1),
        # z=(0,-1,0)), at (0, -4, 0), looking along world +y with world +z up.
        # World point (1, 0, 0.5): relative (1, 4, 0.5) -> GL (1, 0.5, -4) -> same pixel.
        ("blender_front", _rotation_x(np.pi / 2), [0.0, -4.0, 0.0], [1.0, 0.0, 0.5]),
    )
    def test_known_point_maps_to_known_pixel(self, rotation, position, point):
        c2w = np.eye(4, dtype=np.float32)
        c2w[:3, :3] = rotation
        c2w[:3, 3] = position
        w2c = camera.opengl_to_opencv(c2w)
        self.assertEqual(w2c.shape, (3, 4))
        cam = camera.make_camera([100.0, 100.0, 32.0, 24.0], w2c)
        pixels, depth = camera.project(cam, [point])
        np.testing.assert_allclose(pixels, [[57.0, 11.5]], atol=1e-4)
        np.testing.assert_allclose(depth, [4.0], atol=1e-5)
        # Round trip: the ray through that pixel passes through the point.
        origins, directions = camera.rays_from_pixels(cam, pixels)
        np.testing.assert_allclose(origins[0], position, atol=1e-5)
        distance = np.linalg.norm(np.subtract(point, position))
        np.testing.assert_allclose(origins[0] + distance * directions[0], point, atol=1e-4)

    def test_accepts_3x4_and_batches(self):
        c2w = np.stack([np.eye(4, dtype=np.float32)] * 2)
        c2w[1, :3, 3] = [1.0, 2.0, 3.0]
        w2c = camera.opengl_to_opencv(c2w[:, :3, :])
        self.assertEqual(w2c.shape, (2, 3, 4))
        np.testing.assert_allclose(w2c[0, :, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-6)
        # Camera centre survives the conversion.
        np.testing.assert_allclose(camera.camera_center(w2c[1]), [1.0, 2.0, 3.0], atol=1e-6)


class IntersectSphereTest(parameterized.TestCase):
    @parameterized.named_parameters(
        # origin, direction, radius, near, far, hit
        ("through_centre", [0, 0, -4], [0, 0, 1], 1.0, 3.0, 5.0, True),
        ("through_centre_r2", [0, 0, -4], [0, 0, 1], 2.0, 2.0, 6.0, True),
        # Offset chord: x = 0.6 -> half-chord sqrt(1 - 0.36) = 0.8 around t = 4.
        ("offset_chord", [0.6, 0, -4], [0, 0, 1], 1.0, 3.2, 4.8, True),
        # Diagonal: o = (3, 4, 0), d = -(0.6, 0.8, 0): hits at t = 5 - 1 and 5 + 1.
        ("diagonal", [3, 4, 0], [-0.6, -0.8, 0], 1.0, 4.0, 6.0, True),
        ("clean_miss", [1.5, 0, -4], [0, 0, 1], 1.0, 0.0, 0.0, False),
        ("exact_tangent", [1.0, 0, -4], [0, 0, 1], 1.0, 0.0, 0.0, False),
        # Nearly tangent: x = 0.99 -> half-chord sqrt(1 - 0.9801) = 0.141067.
        ("nearly_tangent", [0.99, 0, -4], [0, 0, 1], 1.0, 3.858933, 4.141067, True),
        ("origin_inside", [0, 0, 0.5], [0, 0, 1], 1.0, 0.0, 0.5, True),
        ("origin_inside_backwards", [0, 0, 0.5], [0, 0, -1], 1.0, 0.0, 1.5, True),
        ("sphere_behind", [0, 0, 4], [0, 0, 1], 1.0, 0.0, 0.0, False),
        ("leaving_surface", [0, 0, 1], [0, 0, 1], 1.0, 0.0, 0.0, False),
    )
    def test_hand_worked(self, origin, direction, radius, near, far, hit):
        got_near, got_far, got_hit = camera.intersect_sphere(
            np.array([origin], np.float32), np.array([direction], np.float32), radius
        )
        self.assertEqual(bool(got_hit[0]), hit)
        np.testing.assert_allclose(got_near, [near], atol=2e-5)
        np.testing.assert_allclose(got_far, [far], atol=2e-5)

    def test_batch_shapes_and_no_nan(self):
        rng = np.random.default_rng(1)
        origins = rng.normal(size=(4, 5, 3)).astype(np.float32) * 3.0
        directions = rng.normal(size=(4, 5, 3)).astype(np.float32)
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        near, far, hit = camera.intersect_sphere(origins, directions, 1.0)
        self.assertEqual(near.shape, (4, 5))
        self.assertEqual(hit.dtype, tf.bool)
        self.assertTrue(np.all(np.isfinite(near)) and np.all(np.isfinite(far)))
        self.assertTrue(np.any(hit) and not np.all(hit))
        self.assertTrue(np.all(near.numpy() <= far.numpy()))
        # Hit points lie on the sphere.
        t = np.where(hit, far, 0.0)[..., None]
        surface = np.linalg.norm(origins + t * directions, axis=-1)
        np.testing.assert_allclose(surface[hit.numpy()], 1.0, atol=1e-4)


class LookAtTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("frontal", [0.0, 0.0, -4.0], [0.0, 0.0, 0.0]),
        ("side", [3.0, -0.5, 1.0], [0.0, 0.0, 0.0]),
        ("above_offset_target", [0.5, -3.0, -2.0], [0.2, 0.1, -0.3]),
        ("behind", [0.1, 0.2, 5.0], [0.0, 0.0, 0.0]),
    )
    def test_target_on_principal_point_and_proper_rotation(self, eye, target):
        w2c = camera.look_at(eye, target)
        rotation = w2c[:, :3].numpy()
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        self.assertAlmostEqual(np.linalg.det(rotation), 1.0, places=5)
        intrinsics = [50.0, 50.0, 13.0, 9.0]
        cam = camera.make_camera(intrinsics, w2c)
        pixels, depth = camera.project(cam, [target])
        np.testing.assert_allclose(pixels, [[13.0, 9.0]], atol=1e-4)
        np.testing.assert_allclose(depth, [np.linalg.norm(np.subtract(target, eye))], rtol=1e-5)
        np.testing.assert_allclose(camera.camera_center(w2c), eye, atol=1e-5)
        # World up (-y by default) appears up in the image (smaller pixel y).
        above, _ = camera.project(cam, [np.add(target, [0.0, -0.1, 0.0])])
        self.assertLess(float(above[0, 1]), 9.0)

    def test_orbit_frontal_is_identity_camera(self):
        w2c = camera.orbit_cameras(1, 4.0, yaw_range=(0.0, 0.0), pitch_range=(0.0, 0.0))
        self.assertEqual(w2c.shape, (1, 3, 4))
        np.testing.assert_allclose(w2c[0], _world_to_camera(np.eye(3), [0, 0, 4.0]), atol=1e-6)
        np.testing.assert_allclose(camera.camera_center(w2c[0]), [0.0, 0.0, -4.0], atol=1e-6)

    def test_orbit_middle_view_is_frontal(self):
        w2c = camera.orbit_cameras(3, 2.5, yaw_range=(-0.5, 0.5), pitch_range=(-0.2, 0.2))
        self.assertEqual(w2c.shape, (3, 3, 4))
        np.testing.assert_allclose(w2c[1], _world_to_camera(np.eye(3), [0, 0, 2.5]), atol=1e-5)
        for view in range(3):  # every camera keeps its distance and looks at the origin
            np.testing.assert_allclose(tf.norm(camera.camera_center(w2c[view])), 2.5, rtol=1e-5)
            np.testing.assert_allclose(w2c[view, :, 3], [0.0, 0.0, 2.5], atol=1e-5)

    def test_orbit_eyes_directions(self):
        eyes = camera.orbit_eyes([np.pi / 2, 0.0], [0.0, np.pi / 2], [2.0, 3.0]).numpy()
        np.testing.assert_allclose(eyes[0], [2.0, 0.0, 0.0], atol=1e-6)  # yaw -> +x
        np.testing.assert_allclose(eyes[1], [0.0, -3.0, 0.0], atol=1e-6)  # pitch -> up (-y)


class MakeCameraTest(parameterized.TestCase):
    def test_accepts_matrices(self):
        k = camera.intrinsics_matrix([10.0, 11.0, 3.0, 4.0])
        np.testing.assert_allclose(k, [[10, 0, 3], [0, 11, 4], [0, 0, 1]])
        w2c = np.eye(4, dtype=np.float32)
        w2c[:3, 3] = [1, 2, 3]
        cam = camera.make_camera(k, w2c)
        np.testing.assert_allclose(cam.intrinsics, [10.0, 11.0, 3.0, 4.0])
        self.assertEqual(cam.world_to_camera.shape, (3, 4))
        np.testing.assert_allclose(cam.world_to_camera[:, 3], [1, 2, 3])

    @parameterized.named_parameters(
        ("intrinsics_scalar", 5.0, np.zeros((3, 4)), "intrinsics must have shape"),
        ("intrinsics_three", [1.0, 2.0, 3.0], np.zeros((3, 4)), "intrinsics must have shape"),
        ("intrinsics_2x2", np.eye(2), np.zeros((3, 4)), "intrinsics must have shape"),
        ("w2c_vector", [1.0, 1.0, 0.5, 0.5], np.zeros(4), r"world_to_camera must be \[..., 3, 4\]"),
        ("w2c_3x3", [1.0, 1.0, 0.5, 0.5], np.eye(3), "world_to_camera must have shape"),
        ("w2c_4x3", [1.0, 1.0, 0.5, 0.5], np.zeros((4, 3)), "world_to_camera must have shape"),
    )
    def test_rejects_bad_shapes(self, intrinsics, world_to_camera, message):
        with pytest.raises(ValueError, match=message):
            camera.make_camera(intrinsics, world_to_camera)

    def test_default_intrinsics_and_inverse(self):
        np.testing.assert_allclose(camera.default_intrinsics(48, 64), [128, 128, 32, 24])
        w2c = _world_to_camera(_rotation_x(0.3) @ _rotation_y(-1.1), [0.4, -0.2, 3.0])
        inverse = camera.invert_rigid(w2c).numpy()
        full = np.vstack([w2c, [0, 0, 0, 1]]) @ np.vstack([inverse, [0, 0, 0, 1]])
        np.testing.assert_allclose(full, np.eye(4), atol=1e-5)
