"""Cameras of the synthetic classes: orbits around the origin, pixel rays, projection.

The package's camera convention (`tfglo.geometry.camera`: OpenCV world-to-camera, pixel centres at
+0.5) re-written in a few lines of numpy for speed; tests cross-check them against
`camera.rays_from_pixels`, `camera.look_at` and `camera.project`. The canonical frame has world
+y down and the objects' front towards -z, so yaw 0, pitch 0 is the frontal camera at
(0, 0, -distance); positive yaw (azimuth) moves the camera towards +x, positive pitch
(elevation) raises it (towards -y).
"""

import numpy as np

from tfglo.geometry import camera


def orbit_direction(yaw, pitch) -> np.ndarray:
    """Unit vectors `[..., 3]` from the origin towards cameras at yaw / pitch (radians)."""
    yaw, pitch = np.asarray(yaw, np.float64), np.asarray(pitch, np.float64)
    return np.stack([np.cos(pitch) * np.sin(yaw), -np.sin(pitch), -np.cos(pitch) * np.cos(yaw)], -1)


def orbit_angles(centers) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch (radians) of camera centres `[..., 3]` (the inverse of
    `orbit_direction`); yaw in (-pi, pi]."""
    centers = np.asarray(centers, np.float64)
    yaw = np.arctan2(centers[..., 0], -centers[..., 2])
    pitch = np.arcsin(np.clip(-centers[..., 1] / np.linalg.norm(centers, axis=-1), -1.0, 1.0))
    return yaw, pitch


def angle_between(yaw_a, pitch_a, yaw_b, pitch_b) -> np.ndarray:
    """Angle (radians) at the origin between the directions to two orbit cameras."""
    a, b = orbit_direction(yaw_a, pitch_a), orbit_direction(yaw_b, pitch_b)
    return np.arccos(np.clip(np.sum(a * b, -1), -1.0, 1.0))


def orbit_pose(yaw: float, pitch: float, distance: float) -> np.ndarray:
    """World-to-camera `[3, 4]` (float64) of a camera on the orbit looking at the origin.

    The numpy twin of `camera.look_at(camera.orbit_eyes(yaw, pitch, distance))`: yaw 0, pitch 0
    is the frontal camera at (0, 0, -distance) with identity rotation; positive yaw moves it
    towards +x, positive pitch raises it (towards -y). Angles in radians.
    """
    eye = distance * np.array(
        [np.cos(pitch) * np.sin(yaw), -np.sin(pitch), -np.cos(pitch) * np.cos(yaw)]
    )
    forward = -eye / np.linalg.norm(eye)
    up = np.array([0.0, -1.0, 0.0])
    right = np.cross(-up, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, (-rotation @ eye)[:, None]], -1)


def view_camera(
    yaw: float, pitch: float, distance: float, image_size: int, focal_factor: float = 2.0
) -> camera.Camera:
    """A `camera.Camera` (float32 tensors) on the orbit: default intrinsics, `orbit_pose`."""
    return camera.make_camera(
        camera.default_intrinsics(image_size, image_size, focal_factor),
        orbit_pose(yaw, pitch, distance).astype(np.float32),
    )


def camera_center(world_to_camera) -> np.ndarray:
    """Camera centre `[3]` (world, float64) of a world-to-camera `[3, 4]`: -R^T t."""
    pose = np.asarray(world_to_camera, np.float64)
    return -pose[:, :3].T @ pose[:, 3]


def pixel_rays(intrinsics, world_to_camera, height: int, width: int):
    """Rays through every pixel centre (numpy twin of `camera.image_rays`).

    Returns:
      origin `[3]` (the camera centre), unit directions `[H * W, 3]`, and the camera z of each
      unit direction `[H * W]` (so a hit at distance t has depth t * z).
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    pose = np.asarray(world_to_camera, np.float64)
    rotation, translation = pose[:, :3], pose[:, 3]
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(x - cx) / fx, (y - cy) / fy, np.ones_like(x)], -1).reshape(-1, 3)
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    return -rotation.T @ translation, d_cam @ rotation, d_cam[:, 2]


def project_points(intrinsics, world_to_camera, points) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of `camera.project`: pixels `[N, 2]` and camera depth `[N]` of points `[N, 3]`."""
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    pose = np.asarray(world_to_camera, np.float64)
    cam = np.asarray(points, np.float64) @ pose[:, :3].T + pose[:, 3]
    pixels = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
    return pixels, cam[:, 2]
