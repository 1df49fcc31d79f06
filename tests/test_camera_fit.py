"""Tests of the joint keypoint camera fit (tfglo.camera_fit) against known cameras."""

import numpy as np
import pytest
from absl.testing import parameterized
from scipy.spatial.transform import Rotation

from tfglo.data.synthetic import heads as synthetic
from tfglo.pose import camera_fit

IMAGE_SIZE = 256
INTRINSICS = np.array([2.0 * IMAGE_SIZE, 2.0 * IMAGE_SIZE, IMAGE_SIZE / 2, IMAGE_SIZE / 2])
NOISE_LEVELS_PX = (0.0, 0.5, 1.0, 2.0, 4.0)


def random_head(rng, num_points=5):
    """A rigid head: the face template (K = 5) or random points, in object units."""
    if num_points == 5:
        points = camera_fit.FACE_TEMPLATE_CM + rng.normal(0.0, 0.4, (5, 3))
        return (points - points.mean(0)) * 0.06
    return rng.normal(0.0, 0.35, (num_points, 3))


def orbit_poses(rng, count, distance=4.5, yaw=35.0, pitch=15.0, roll=8.0):
    """`[M, 3, 4]` cameras looking at the origin from the front half (the synthetic convention)."""
    poses = []
    for _ in range(count):
        pose = synthetic.orbit_pose(
            np.radians(rng.uniform(-yaw, yaw)), np.radians(rng.uniform(-pitch, pitch)), distance
        )
        tilt = Rotation.from_euler("z", rng.uniform(-roll, roll), degrees=True).as_matrix()
        pose = tilt @ pose  # roll the camera about its axis (people tilt their heads)
        poses.append(pose)
    return np.array(poses)


def project(points, poses):
    intrinsics = np.tile(INTRINSICS, (len(poses), 1))
    return camera_fit._project(points, poses[:, :, :3], poses[:, :, 3], intrinsics)


def rotation_errors_deg(fitted_w2c, true_w2c):
    """Per-image rotation error after the best single global rotation (a similarity's part)."""
    fitted = np.asarray(fitted_w2c, np.float64)[:, :, :3]
    true = np.asarray(true_w2c, np.float64)[:, :, :3]
    # R_fit G ~ R_true for one G: the chordal mean of R_fit^T R_true.
    gauge = camera_fit._mean_rotation(np.einsum("mji,mjk->mik", fitted, true))
    relative = fitted @ gauge @ np.transpose(true, (0, 2, 1))
    return np.degrees(Rotation.from_matrix(relative).magnitude())


def similarity_alignment(source, target):
    """Umeyama: (s, R, t) minimising |s R source + t - target|^2 over `[N, 3]` points."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.sum(sv * np.diag(d)) / np.sum(a**2)
    return scale, rotation, mu_t - scale * rotation @ mu_s


def camera_centres(w2c):
    w2c = np.asarray(w2c, np.float64)
    return -np.einsum("mji,mj->mi", w2c[:, :, :3], w2c[:, :, 3])


def noise_curve(config=None, seeds=(0, 1, 2), num_images=32):
    """Mean rotation error (degrees) per noise level over a few random rigid heads."""
    curve = {}
    for noise in NOISE_LEVELS_PX:
        errors = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            head, poses = random_head(rng), orbit_poses(rng, num_images)
            observed = project(head, poses) + rng.normal(0.0, noise, (num_images, 5, 2))
            result = camera_fit.fit_cameras(observed, INTRINSICS, config)
            errors.append(rotation_errors_deg(result.world_to_camera, poses))
        curve[noise] = float(np.mean(errors))
    return curve


class ExactKeypointsTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("face_template", 5, 24, "schur"),
        ("face_few_images", 5, 4, "schur"),
        ("generic_8_points", 8, 20, "schur"),
        ("generic_12_points", 12, 12, "schur"),
        ("face_scipy_reference", 5, 12, "scipy"),
    )
    def test_recovers_cameras_up_to_a_similarity(self, num_points, num_images, solver):
        rng = np.random.default_rng(num_points * 100 + num_images)
        head, poses = random_head(rng, num_points), orbit_poses(rng, num_images)
        # Without the shape prior the minimum is exact (the prior trades a little reprojection
        # error for a plausible face depth; see test_shape_prior_bias_is_small).
        config = camera_fit.CameraFitConfig(solver=solver, max_iterations=400, shape_prior_std=None)
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS, config)
        self.assertTrue(result.inliers.all())
        self.assertLess(result.max_error_px, 1e-3)
        self.assertLess(rotation_errors_deg(result.world_to_camera, poses).max(), 0.01)
        # One similarity maps the fitted points onto the true ones, and the cameras with them.
        scale, rotation, offset = similarity_alignment(
            result.canonical_points.astype(np.float64), head
        )
        aligned = scale * result.canonical_points @ rotation.T + offset
        np.testing.assert_allclose(aligned, head, atol=1e-4)
        centres = scale * camera_centres(result.world_to_camera) @ rotation.T + offset
        np.testing.assert_allclose(centres, camera_centres(poses), atol=1e-3)

    def test_shape_prior_bias_is_small(self):
        rng = np.random.default_rng(17)
        head, poses = random_head(rng), orbit_poses(rng, 24)
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS)
        self.assertLess(result.median_error_px, 0.5)
        self.assertLess(rotation_errors_deg(result.world_to_camera, poses).max(), 1.0)

    def test_solvers_agree(self):
        rng = np.random.default_rng(19)
        head, poses = random_head(rng), orbit_poses(rng, 10)
        observed = project(head, poses) + rng.normal(0.0, 1.0, (10, 5, 2))
        fits = [
            camera_fit.fit_cameras(
                observed,
                INTRINSICS,
                camera_fit.CameraFitConfig(solver=s, max_iterations=500, outlier_loss="linear"),
            )
            for s in ("schur", "scipy")
        ]
        np.testing.assert_allclose(fits[0].errors_px, fits[1].errors_px, atol=1e-3)
        np.testing.assert_allclose(fits[0].canonical_points, fits[1].canonical_points, atol=1e-4)

    def test_gauge_of_a_face(self):
        rng = np.random.default_rng(7)
        head, poses = random_head(rng), orbit_poses(rng, 16)
        config = camera_fit.CameraFitConfig(scene_radius=1.5)
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS, config)
        points = result.canonical_points.astype(np.float64)
        # The world origin is the sphere's centre, SPHERE_CENTER_CM from the keypoints' centroid.
        offset = camera_fit.sphere_center_offset(config, face=True)
        np.testing.assert_allclose(points.mean(0), -offset, atol=1e-6)
        rms = np.sqrt(np.mean(np.sum((points - points.mean(0)) ** 2, -1)))
        self.assertAlmostEqual(rms, camera_fit.default_keypoint_rms_radius(config, True), 5)
        eyes = points[1] - points[0]
        self.assertGreater(eyes[0], 0.0)  # Face Mesh 33 at -x, 263 at +x
        self.assertAlmostEqual(eyes[1], 0.0, 6)
        self.assertAlmostEqual(eyes[2], 0.0, 6)
        mouth = 0.5 * (points[3] + points[4]) - 0.5 * (points[0] + points[1])
        self.assertGreater(mouth[1], 0.0)  # mouth below the eyes: +y is down
        self.assertLess(points[2, 2], points[[0, 1, 3, 4], 2].mean())  # the nose points to -z
        centres = camera_centres(result.world_to_camera)
        self.assertTrue(np.all(centres[:, 2] < 0))  # the face looks towards the cameras
        self.assertTrue(np.all(np.linalg.norm(centres, axis=-1) > config.scene_radius))
        self.assertEqual(result.notes, [])

    def test_head_fits_the_sphere(self):
        # The sphere's radius in template centimetres maps to the scene radius.
        config = camera_fit.CameraFitConfig(scene_radius=1.0)
        rms = camera_fit.default_keypoint_rms_radius(config, face=True)
        centred = camera_fit.FACE_TEMPLATE_CM - camera_fit.FACE_TEMPLATE_CM.mean(0)
        template_rms = np.sqrt(np.mean(np.sum(centred**2, -1)))
        self.assertAlmostEqual(camera_fit.SPHERE_RADIUS_CM * rms / template_rms, 1.0, 6)
        head_only = camera_fit.CameraFitConfig(
            sphere_radius_cm=camera_fit.HEAD_RADIUS_CM, sphere_center_cm=(0.0, 0.0, 0.0)
        )
        rms = camera_fit.default_keypoint_rms_radius(head_only, face=True)
        self.assertAlmostEqual(camera_fit.HEAD_RADIUS_CM * rms / template_rms, 1.0, 6)
        self.assertIsNone(camera_fit.sphere_center_offset(head_only, face=True))
        self.assertAlmostEqual(
            camera_fit.default_keypoint_rms_radius(
                camera_fit.CameraFitConfig(keypoint_rms_radius=0.4), face=True
            ),
            0.4,
        )

    def test_head_and_shoulders_fit_the_sphere(self):
        # Points of a typical head and shoulders, in template centimetres from the keypoints'
        # centroid (+y down, +z away from the viewer), land inside the unit sphere; the shoulders
        # would not fit the head-only sphere of 17 cm around the centroid.
        centroid = camera_fit.FACE_TEMPLATE_CM.mean(0)
        body_cm = {
            "shoulder_left": (18.0, 22.0, 8.0),
            "shoulder_right": (-18.0, 22.0, 8.0),
            "top_of_hair": (0.0, -16.0, 6.0),
            "back_of_skull": (0.0, -3.0, 16.0),
            "chin": (0.0, 10.0, -2.0),
        }
        rng = np.random.default_rng(5)
        poses = orbit_poses(rng, 12)
        head = (camera_fit.FACE_TEMPLATE_CM - centroid) / 100.0  # metres, any scale works
        config = camera_fit.CameraFitConfig()
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS, config)
        points = result.canonical_points.astype(np.float64)
        units_per_cm = (
            np.linalg.norm(points[1] - points[0]) / np.linalg.norm(head[1] - head[0]) / 100
        )
        fitted_centroid = points.mean(0)
        for name, body in body_cm.items():
            world = fitted_centroid + units_per_cm * np.asarray(body)
            self.assertLess(np.linalg.norm(world), 0.995 * config.scene_radius, name)
            head_only = np.linalg.norm(np.asarray(body)) / camera_fit.HEAD_RADIUS_CM
            if name.startswith("shoulder"):
                self.assertGreater(head_only, 1.0, name)

    def test_single_image_keeps_the_template(self):
        rng = np.random.default_rng(3)
        poses = orbit_poses(rng, 1)
        head = camera_fit._unit_rms(camera_fit.FACE_TEMPLATE_CM) * 0.3
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS)
        self.assertLess(result.max_error_px, 1e-3)
        self.assertLess(rotation_errors_deg(result.world_to_camera, poses).max(), 1e-3)


class NoiseTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("default_shape_prior", None, 0.5),
        ("no_shape_prior", camera_fit.CameraFitConfig(shape_prior_std=None), 1e-3),
    )
    def test_error_grows_gracefully_with_noise(self, config, exact_bound):
        curve = noise_curve(config)
        print(f"camera-fit rotation error (mean deg) vs keypoint noise (px), {config}: {curve}")
        self.assertLess(curve[0.0], exact_bound)
        levels = sorted(curve)
        for low, high in zip(levels, levels[1:]):
            self.assertLessEqual(curve[low], curve[high] + 0.2)  # grows (up to sampling noise)
        # Graceful: about linear in the noise (5 points on a face ~70 px wide: ~3 deg per px),
        # no breakdown up to 4 px (1.6% of the crop).
        self.assertLess(curve[1.0], 5.0)
        slope = curve[0.5] / 0.5
        for noise in levels[1:]:
            self.assertLess(curve[noise] / noise, 1.6 * slope, msg=f"{noise} px: {curve}")


class SyntheticClassTest(parameterized.TestCase):
    """tfglo.synthetic's heads, with their exact projected keypoints as the detections."""

    def views(self, object_ids, views_per_object, **config_kwargs):
        config = synthetic.SyntheticConfig(
            num_objects=max(object_ids) + 1,
            image_size=IMAGE_SIZE,
            eval_views_per_object=views_per_object - 1,
            **config_kwargs,
        )
        points, poses = [], []
        for object_id in object_ids:
            keypoints = synthetic.object_keypoints(synthetic.object_params(config, object_id))
            for _, yaw, pitch in synthetic.view_angles(config, object_id):
                pose = synthetic.orbit_pose(yaw, pitch, config.camera_distance)
                points.append(synthetic.project_points(INTRINSICS, pose, keypoints)[0])
                poses.append(pose)
        return np.array(points), np.array(poses)

    @parameterized.parameters(0, 5, 11)
    def test_one_head_many_views(self, object_id):
        points, poses = self.views([object_id], views_per_object=9)
        exact = camera_fit.CameraFitConfig(shape_prior_std=None)
        result = camera_fit.fit_cameras(points, INTRINSICS, exact)
        self.assertLess(result.max_error_px, 1e-3)
        self.assertLess(rotation_errors_deg(result.world_to_camera, poses).max(), 2.0)
        # The default shape prior pulls towards a human face, deeper than these stylised heads:
        # a bounded bias.
        result = camera_fit.fit_cameras(points, INTRINSICS)
        self.assertLess(rotation_errors_deg(result.world_to_camera, poses).max(), 6.0)

    def test_many_heads_one_view_each_is_limited_by_shape_variation(self):
        # The single-view setting: every head differs a little, so 5 keypoints cannot separate a
        # head's proportions from its pose (a shorter face looks pitched). The fit must still find
        # the best shared shape: it reprojects better than the true cameras with the best shared
        # shape would. Near-frontal training views (the case the shape prior is for).
        points, poses = self.views(
            list(range(24)),
            views_per_object=1,
            train_yaw_spread_deg=5.0,
            train_pitch_spread_deg=3.0,
        )
        flat = camera_fit.fit_cameras(
            points, INTRINSICS, camera_fit.CameraFitConfig(shape_prior_std=None)
        )
        result = camera_fit.fit_cameras(points, INTRINSICS)
        self.assertTrue(result.inliers.all())
        intrinsics = np.tile(INTRINSICS, (len(poses), 1))

        def residuals(flat):
            shape = flat.reshape(5, 3)
            return (
                camera_fit._project(shape, poses[:, :, :3], poses[:, :, 3], intrinsics) - points
            ).ravel()

        from scipy import optimize

        start = synthetic.object_keypoints(
            synthetic.object_params(synthetic.SyntheticConfig(), 0)
        ).ravel()
        best_shared = optimize.least_squares(residuals, start).x
        truth_error = np.median(
            camera_fit._rms_errors(residuals(best_shared).reshape(len(poses), 5, 2))
        )
        self.assertLess(flat.median_error_px, truth_error)
        self.assertLess(result.median_error_px, truth_error)
        errors = rotation_errors_deg(result.world_to_camera, poses)
        flat_errors = rotation_errors_deg(flat.world_to_camera, poses)
        # Near-frontal views hide depth: without the prior the face comes out flat and the
        # cameras pitch wildly; the prior keeps them sane.
        self.assertLess(np.median(errors), 10.0)
        self.assertLess(np.median(errors), 0.6 * np.median(flat_errors))
        print(
            f"synthetic class, one view per head: median fit error {result.median_error_px:.2f} "
            f"px (true cameras + best shared shape: {truth_error:.2f} px), rotation error median "
            f"{np.median(errors):.1f} deg, max {errors.max():.1f} deg (no shape prior: "
            f"{np.median(flat_errors):.1f} / {flat_errors.max():.1f} deg)"
        )


class OutlierTest(parameterized.TestCase):
    def test_corrupted_images_are_dropped_with_a_reason(self):
        rng = np.random.default_rng(11)
        head, poses = random_head(rng), orbit_poses(rng, 30)
        observed = project(head, poses) + rng.normal(0.0, 0.5, (30, 5, 2))
        observed[4, 2] += (25.0, -30.0)  # a badly detected nose
        observed[9] = observed[9][[3, 1, 2, 0, 4]]  # an eye and a mouth corner swapped
        observed[17] = rng.uniform(100.0, 156.0, (5, 2))  # a detection that is not this face
        result = camera_fit.fit_cameras(observed, INTRINSICS)
        self.assertEqual(sorted(np.flatnonzero(~result.inliers)), [4, 9, 17])
        self.assertGreaterEqual(result.rounds, 2)
        for index in (4, 9, 17):
            self.assertRegex(result.outlier_reasons[index], r"fit outlier: reprojection error")
            self.assertGreater(result.errors_px[index], result.threshold_px)
        self.assertLess(result.median_error_px, 1.0)
        clean = rotation_errors_deg(result.world_to_camera[result.inliers], poses[result.inliers])
        self.assertLess(np.mean(clean), 2.0)
        summary = result.summary([f"img{i}" for i in range(30)])
        self.assertEqual(sorted(summary["outliers"]), ["img17", "img4", "img9"])
        self.assertEqual(summary["num_inliers"], 27)

    def test_errors_below_the_floor_are_never_outliers(self):
        rng = np.random.default_rng(12)
        head, poses = random_head(rng), orbit_poses(rng, 20)
        observed = project(head, poses)
        observed[3, 0] += 0.5  # an "outlier" of 0.5 px against exact keypoints: below 2.56 px
        result = camera_fit.fit_cameras(observed, INTRINSICS)
        self.assertTrue(result.inliers.all())

    def test_never_drops_below_the_inlier_fraction(self):
        rng = np.random.default_rng(13)
        head, poses = random_head(rng), orbit_poses(rng, 6)
        observed = project(head, poses) + rng.normal(0.0, 20.0, (6, 5, 2))
        config = camera_fit.CameraFitConfig(outlier_mad_factor=0.0, outlier_floor=0.0)
        result = camera_fit.fit_cameras(observed, INTRINSICS, config)
        self.assertGreaterEqual(result.inliers.sum(), 3)


class CanonicalOnlyTest(parameterized.TestCase):
    def test_camera_against_known_canonical_points(self):
        rng = np.random.default_rng(21)
        head, poses = random_head(rng), orbit_poses(rng, 12)
        exact = camera_fit.CameraFitConfig(shape_prior_std=None)
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS, exact)
        canonical = result.canonical_points
        for i in range(3):
            w2c, error = camera_fit.fit_camera_to_canonical(
                project(head, poses[i : i + 1])[0], INTRINSICS, canonical
            )
            self.assertEqual(w2c.shape, (3, 4))
            self.assertLess(error, 1e-3)
            np.testing.assert_allclose(w2c, result.world_to_camera[i], atol=1e-4)

    @parameterized.named_parameters(
        ("bad_points", np.zeros((5, 3)), np.zeros((5, 3)), r"points_2d must be \[K, 2\]"),
        ("mismatch", np.zeros((5, 2)), np.zeros((4, 3)), r"canonical must be \[5, 3\]"),
        ("too_few", np.zeros((2, 2)), np.zeros((2, 3)), "at least 3 keypoints"),
        ("nan", np.full((5, 2), np.nan), np.zeros((5, 3)), "finite"),
    )
    def test_rejects(self, points, canonical, message):
        with pytest.raises(ValueError, match=message):
            camera_fit.fit_camera_to_canonical(points, INTRINSICS, canonical)


class ValidationTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("rank", np.zeros((5, 2)), INTRINSICS, {}, r"points_2d must be \[M, K, 2\]"),
        ("no_images", np.zeros((0, 5, 2)), INTRINSICS, {}, r"no images"),
        ("two_points", np.zeros((4, 2, 2)), INTRINSICS, {}, "at least 3 keypoints"),
        ("nan", np.full((4, 5, 2), np.nan), INTRINSICS, {}, "finite"),
        ("intrinsics", np.zeros((4, 5, 2)), np.ones(3), {}, r"intrinsics must be \[4\]"),
        ("focal", np.zeros((4, 5, 2)), np.zeros(4), {}, "positive focal"),
        ("loss", np.zeros((4, 5, 2)), INTRINSICS, {"loss": "cauchy2"}, "unknown loss"),
        ("solver", np.zeros((4, 5, 2)), INTRINSICS, {"solver": "ceres"}, "unknown solver"),
        (
            "template_k",
            np.zeros((4, 6, 2)),
            INTRINSICS,
            {"face_template": True},
            "face template has 5",
        ),
    )
    def test_rejects(self, points, intrinsics, overrides, message):
        config = camera_fit.CameraFitConfig(**overrides)
        with pytest.raises(ValueError, match=message):
            camera_fit.fit_cameras(points, intrinsics, config)

    @parameterized.parameters("soft_l1", "huber")
    def test_robust_losses_match_exact_data(self, loss):
        rng = np.random.default_rng(5)
        head, poses = random_head(rng), orbit_poses(rng, 10)
        config = camera_fit.CameraFitConfig(loss=loss, shape_prior_std=None)
        result = camera_fit.fit_cameras(project(head, poses), INTRINSICS, config)
        self.assertLess(result.max_error_px, 1e-3)
