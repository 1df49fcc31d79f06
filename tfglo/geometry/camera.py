"""Pinhole cameras in the OpenCV convention: rays, projection, conversions.

One camera convention for the whole package (see DESIGN.md section 3):
- intrinsics `[..., 4]` = (fx, fy, cx, cy) in pixels; pixel (i, j) has its centre at
  (j + 0.5, i + 0.5), so the centre of a W x H image is (W / 2, H / 2);
- world-to-camera `[..., 3, 4]` = [R | t], x_cam = R x_world + t, camera axes +x right, +y down,
  +z forward (OpenCV).

Importers convert other conventions here, once (`opengl_to_opencv`). All functions are pure and
accept numpy arrays or tensors (float32); they return tensors. The perspective ray and projection
maths are tensorflow-graphics ops (`rendering.camera.perspective`), imported lazily because
importing tensorflow-graphics initialises TensorFlow's devices.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf


class Camera(NamedTuple):
    """A batch of pinhole cameras (a `tf.nest` structure, usable inside `tf.function`).

    Attributes:
      intrinsics: `[..., 4]` float32 (fx, fy, cx, cy), pixels.
      world_to_camera: `[..., 3, 4]` float32 [R | t], OpenCV axes, object units.
    """

    intrinsics: tf.Tensor
    world_to_camera: tf.Tensor


def _perspective():
    # Lazy: importing tensorflow_graphics initialises TF devices (see module docstring).
    from tensorflow_graphics.rendering.camera import perspective

    return perspective


def make_camera(intrinsics, world_to_camera) -> Camera:
    """Builds a `Camera` from array-likes, validating shapes.

    Args:
      intrinsics: `[..., 4]` (fx, fy, cx, cy) or `[..., 3, 3]` matrices K.
      world_to_camera: `[..., 3, 4]` or `[..., 4, 4]` rigid transforms.

    Returns:
      A `Camera` with float32 tensors of shapes `[..., 4]` and `[..., 3, 4]`.

    Raises:
      ValueError: the shapes are not of those forms.
    """
    intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
    world_to_camera = tf.convert_to_tensor(world_to_camera, tf.float32)
    if intrinsics.shape.rank and intrinsics.shape[-2:] == (3, 3):
        intrinsics = intrinsics_from_matrix(intrinsics)
    if intrinsics.shape.rank is None or intrinsics.shape.rank < 1 or intrinsics.shape[-1] != 4:
        raise ValueError(
            f"intrinsics must have shape [..., 4] or [..., 3, 3], got {intrinsics.shape}"
        )
    if world_to_camera.shape.rank is None or world_to_camera.shape.rank < 2:
        raise ValueError(f"world_to_camera must be [..., 3, 4], got {world_to_camera.shape}")
    if world_to_camera.shape[-2:] == (4, 4):
        world_to_camera = world_to_camera[..., :3, :]
    if world_to_camera.shape[-2:] != (3, 4):
        raise ValueError(
            f"world_to_camera must have shape [..., 3, 4] or [..., 4, 4], got "
            f"{world_to_camera.shape}"
        )
    return Camera(intrinsics, world_to_camera)


def intrinsics_matrix(intrinsics) -> tf.Tensor:
    """Returns K `[..., 3, 3]` from (fx, fy, cx, cy) `[..., 4]`."""
    intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
    fx, fy, cx, cy = tf.unstack(intrinsics, axis=-1)
    zero, one = tf.zeros_like(fx), tf.ones_like(fx)
    rows = [
        tf.stack([fx, zero, cx], -1),
        tf.stack([zero, fy, cy], -1),
        tf.stack([zero, zero, one], -1),
    ]
    return tf.stack(rows, -2)


def intrinsics_from_matrix(matrix) -> tf.Tensor:
    """Returns (fx, fy, cx, cy) `[..., 4]` from K `[..., 3, 3]` (skew is dropped)."""
    matrix = tf.convert_to_tensor(matrix, tf.float32)
    return tf.stack(
        [matrix[..., 0, 0], matrix[..., 1, 1], matrix[..., 0, 2], matrix[..., 1, 2]], -1
    )


def default_intrinsics(height: int, width: int, focal_factor: float = 2.0) -> np.ndarray:
    """Returns (fx, fy, cx, cy) `[4]` with focal = focal_factor * width and a centred point."""
    focal = focal_factor * width
    return np.array([focal, focal, width / 2.0, height / 2.0], np.float32)


def rotation_and_translation(world_to_camera) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits [R | t] `[..., 3, 4]` into R `[..., 3, 3]` and t `[..., 3]`."""
    world_to_camera = tf.convert_to_tensor(world_to_camera, tf.float32)
    return world_to_camera[..., :3], world_to_camera[..., 3]


def camera_center(world_to_camera) -> tf.Tensor:
    """Returns the camera centre in world coordinates, -R^T t, `[..., 3]`."""
    rotation, translation = rotation_and_translation(world_to_camera)
    return -tf.linalg.matvec(rotation, translation, transpose_a=True)


def invert_rigid(transform) -> tf.Tensor:
    """Inverts rigid transforms [R | t] `[..., 3, 4]` -> [R^T | -R^T t] `[..., 3, 4]`."""
    rotation, translation = rotation_and_translation(transform)
    rotation_t = tf.linalg.matrix_transpose(rotation)
    return tf.concat([rotation_t, -tf.linalg.matvec(rotation_t, translation)[..., None]], -1)


def pixel_centers(height: int, width: int) -> tf.Tensor:
    """Returns the (x, y) pixel-centre coordinates of an image, `[H, W, 2]`, pixels."""
    x = tf.range(width, dtype=tf.float32) + 0.5
    y = tf.range(height, dtype=tf.float32) + 0.5
    xx, yy = tf.meshgrid(x, y)
    return tf.stack([xx, yy], -1)


def rays_from_pixels(camera: Camera, pixels) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns world-space rays through given pixel coordinates.

    Args:
      camera: a `Camera` with batch shape `[...]`.
      pixels: `[..., N, 2]` (x, y) pixel coordinates (centres are at +0.5); the leading dims must
        broadcast with the camera's batch shape.

    Returns:
      origins `[..., N, 3]` (the camera centre) and unit directions `[..., N, 3]`, world frame.
    """
    pixels = tf.convert_to_tensor(pixels, tf.float32)
    intrinsics = tf.convert_to_tensor(camera.intrinsics, tf.float32)[..., None, :]
    # tensorflow-graphics op: camera-space direction (x - cx) / fx, (y - cy) / fy, 1.
    directions_cam = _perspective().ray(pixels, intrinsics[..., :2], intrinsics[..., 2:])
    rotation, _ = rotation_and_translation(camera.world_to_camera)
    # World direction = R^T d_cam, written as d_cam R to broadcast over N.
    directions = tf.linalg.matmul(directions_cam, rotation)
    directions = tf.math.l2_normalize(directions, axis=-1)
    origins = tf.broadcast_to(
        camera_center(camera.world_to_camera)[..., None, :], tf.shape(directions)
    )
    return origins, directions


def image_rays(camera: Camera, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns the rays through every pixel centre, origins and directions `[..., H, W, 3]`."""
    pixels = tf.reshape(pixel_centers(height, width), [-1, 2])
    origins, directions = rays_from_pixels(camera, pixels)
    batch_shape = tf.shape(origins)[:-2]
    new_shape = tf.concat([batch_shape, [height, width, 3]], 0)
    return tf.reshape(origins, new_shape), tf.reshape(directions, new_shape)


def world_to_camera_points(world_to_camera, points) -> tf.Tensor:
    """Transforms world points `[..., N, 3]` into the camera frame, `[..., N, 3]`."""
    rotation, translation = rotation_and_translation(world_to_camera)
    points = tf.convert_to_tensor(points, tf.float32)
    return tf.linalg.matmul(points, rotation, transpose_b=True) + translation[..., None, :]


def project(camera: Camera, points) -> tuple[tf.Tensor, tf.Tensor]:
    """Projects world points into the image.

    Args:
      camera: a `Camera` with batch shape `[...]`.
      points: `[..., N, 3]` world points.

    Returns:
      pixels `[..., N, 2]` (x, y) in pixels, and depth `[..., N]` (camera z, object units;
      negative behind the camera).
    """
    points_cam = world_to_camera_points(camera.world_to_camera, points)
    intrinsics = tf.convert_to_tensor(camera.intrinsics, tf.float32)[..., None, :]
    # tensorflow-graphics op: x' = fx x / z + cx, y' = fy y / z + cy.
    pixels = _perspective().project(points_cam, intrinsics[..., :2], intrinsics[..., 2:])
    return pixels, points_cam[..., 2]


def intersect_sphere(origins, directions, radius: float = 1.0):
    """Intersects rays with a sphere of `radius` centred at the world origin.

    Written here (tensorflow-graphics has no ray/sphere op). Solves |o + t d|^2 = r^2 for unit d.

    Args:
      origins: `[..., 3]` ray origins.
      directions: `[..., 3]` unit ray directions.
      radius: sphere radius, object units.

    Returns:
      near `[...]`, far `[...]` (distances along the ray, near >= 0: an origin inside the sphere
      gives near = 0) and hit `[...]` bool. Rays that miss the sphere, or whose whole intersection
      lies behind the origin, have hit False and near = far = 0 (never NaN).
    """
    origins = tf.convert_to_tensor(origins, tf.float32)
    directions = tf.convert_to_tensor(directions, tf.float32)
    b = tf.reduce_sum(origins * directions, -1)
    c = tf.reduce_sum(origins * origins, -1) - radius**2
    discriminant = b * b - c
    sqrt_disc = tf.sqrt(tf.maximum(discriminant, 0.0))
    near = tf.maximum(-b - sqrt_disc, 0.0)
    far = -b + sqrt_disc
    hit = (discriminant > 0.0) & (far > 0.0)
    zeros = tf.zeros_like(near)
    return tf.where(hit, near, zeros), tf.where(hit, far, zeros), hit


def opengl_to_opencv(camera_to_world) -> tf.Tensor:
    """Converts Blender/OpenGL camera-to-world `[..., 3|4, 4]` into OpenCV world-to-camera.

    OpenGL cameras look along -z with +y up; OpenCV cameras look along +z with +y down, so the
    camera axes flip y and z. Returns `[..., 3, 4]` [R | t].
    """
    camera_to_world = tf.convert_to_tensor(camera_to_world, tf.float32)[..., :3, :]
    flip = tf.constant([1.0, -1.0, -1.0], tf.float32)
    rotation = camera_to_world[..., :3] * flip  # scales columns: c2w_cv = c2w_gl diag(1,-1,-1)
    c2w = tf.concat([rotation, camera_to_world[..., 3:]], -1)
    return invert_rigid(c2w)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> tf.Tensor:
    """World-to-camera transforms `[..., 3, 4]` of cameras at `eye` looking at `target`.

    Args:
      eye: `[..., 3]` camera centres.
      target: `[..., 3]` points the cameras look at.
      up: `[..., 3]` world direction that appears up in the image (image -y); the default suits
        the package's canonical frame, where world +y points down like the image y axis.

    Returns:
      `[..., 3, 4]` OpenCV world-to-camera transforms.
    """
    eye = tf.convert_to_tensor(eye, tf.float32)
    target = tf.broadcast_to(tf.convert_to_tensor(target, tf.float32), tf.shape(eye))
    up = tf.broadcast_to(tf.convert_to_tensor(up, tf.float32), tf.shape(eye))
    forward = tf.math.l2_normalize(target - eye, -1)
    right = tf.math.l2_normalize(tf.linalg.cross(-up, forward), -1)
    down = tf.linalg.cross(forward, right)
    rotation = tf.stack([right, down, forward], -2)  # rows: camera axes in world coordinates
    translation = -tf.linalg.matvec(rotation, eye)
    return tf.concat([rotation, translation[..., None]], -1)


def orbit_eyes(yaw, pitch, radius) -> tf.Tensor:
    """Camera centres on a sphere around the origin, `[..., 3]`.

    Yaw 0 and pitch 0 put the camera on the -z axis looking towards +z (the canonical frontal
    view: faces look towards -z). Positive yaw turns the camera towards +x (the object seems to
    turn to its left); positive pitch raises the camera (towards -y, world up).

    Args:
      yaw: `[...]` radians.
      pitch: `[...]` radians.
      radius: `[...]` distance from the origin, object units.
    """
    yaw = tf.convert_to_tensor(yaw, tf.float32)
    pitch = tf.convert_to_tensor(pitch, tf.float32)
    radius = tf.convert_to_tensor(radius, tf.float32)
    x = radius * tf.cos(pitch) * tf.sin(yaw)
    y = -radius * tf.sin(pitch)
    z = -radius * tf.cos(pitch) * tf.cos(yaw)
    return tf.stack([x, y, z], -1)


def orbit_cameras(
    num_views: int,
    radius: float,
    yaw_range=(-0.6, 0.6),
    pitch_range=(0.0, 0.0),
) -> tf.Tensor:
    """World-to-camera transforms `[num_views, 3, 4]` on a yaw/pitch path around the origin.

    The path sweeps yaw linearly over `yaw_range` and pitch along one sine period scaled to
    `pitch_range`, so a GIF of the frames loops. Graph-friendly (usable inside a SavedModel).

    Args:
      num_views: number of cameras (>= 1).
      radius: camera distance from the origin, object units.
      yaw_range: (min, max) yaw, radians.
      pitch_range: (min, max) pitch, radians.
    """
    t = tf.linspace(0.0, 1.0, num_views)
    yaw_range = tf.cast(yaw_range, tf.float32)
    pitch_range = tf.cast(pitch_range, tf.float32)
    yaw = yaw_range[0] + (yaw_range[1] - yaw_range[0]) * t
    middle = 0.5 * (pitch_range[0] + pitch_range[1])
    half = 0.5 * (pitch_range[1] - pitch_range[0])
    pitch = middle + half * tf.sin(2.0 * np.pi * t)
    eyes = orbit_eyes(yaw, pitch, tf.fill(tf.shape(yaw), tf.cast(radius, tf.float32)))
    return look_at(eyes)
