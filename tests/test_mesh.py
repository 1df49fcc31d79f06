"""Tests of meshes: marching cubes and closedness (tfglo.geometry.mesh), PLY / GLB files, and the
extraction from a field (tfglo.nerf.mesh_extraction), analytic and trained."""

import pathlib
import struct
import tempfile

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
import trimesh
from absl.testing import parameterized

from tfglo.geometry import mesh as mesh_lib
from tfglo.nerf import mesh_extraction


class SphereField:
    """An analytic field: a ball of `radius` (smooth density step) coloured by position.

    density = peak * sigmoid((radius - |x|) / width), rgb = (x + 1) / 2 clipped, like a
    `ForegroundField`: `(points [N, S, 3], latents [N, D]) -> (density [N, S], rgb [N, S, 3])`.
    The latent shifts the ball's centre along x (to check it is used).
    """

    def __init__(self, radius=0.6, peak=40.0, width=0.02):
        self.radius, self.peak, self.width = radius, peak, width

    def __call__(self, points, latents):
        centre = tf.pad(latents[:, :1], [[0, 0], [0, 2]])[:, None, :]
        distance = tf.norm(points - centre, axis=-1)
        density = self.peak * tf.sigmoid((self.radius - distance) / self.width)
        rgb = tf.clip_by_value((points + 1.0) / 2.0, 0.0, 1.0)
        return density, rgb


def _tmp(test) -> pathlib.Path:
    directory = tempfile.TemporaryDirectory()
    test.addCleanup(directory.cleanup)
    return pathlib.Path(directory.name)


class MarchingCubesTest(parameterized.TestCase):
    def test_sphere_radius_and_closed_surface(self):
        n, radius = 48, 0.55
        axis = np.linspace(-1.0, 1.0, n)
        x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
        values = radius - np.sqrt(x**2 + y**2 + z**2)  # > 0 inside
        step = axis[1] - axis[0]
        mesh = mesh_lib.marching_cubes(values, 0.0, origin=(-1.0,) * 3, spacing=step)
        distances = np.linalg.norm(mesh.vertices, axis=-1)
        np.testing.assert_allclose(distances, radius, atol=0.05 * step)
        topology = mesh_lib.topology(mesh)
        self.assertTrue(topology.watertight, topology)
        self.assertEqual(topology.euler_characteristic, 2)
        self.assertEqual(topology.num_components, 1)
        # Normals point out of the solid and faces are wound counter-clockwise seen from outside.
        radial = mesh.vertices / distances[:, None]
        self.assertGreater(np.min(np.sum(mesh.normals * radial, -1)), 0.9)
        centres = mesh.vertices[mesh.faces].mean(1)
        face_normals = mesh_lib.face_normals(mesh.vertices, mesh.faces)
        self.assertTrue(np.all(np.sum(face_normals * centres, -1) > 0))
        # Enclosed volume (divergence theorem) close to the ball's.
        volume = np.sum(face_normals * centres) / 6.0
        self.assertAlmostEqual(volume / (4.0 / 3.0 * np.pi * radius**3), 1.0, delta=0.02)

    @parameterized.named_parameters(("above", "above", 1.0), ("below", "below", -1.0))
    def test_inside_convention(self, inside, sign):
        axis = np.linspace(-1.0, 1.0, 24)
        x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
        values = sign * (0.5 - np.sqrt(x**2 + y**2 + z**2))
        mesh = mesh_lib.marching_cubes(values, 0.0, (-1.0,) * 3, axis[1] - axis[0], inside)
        centres = mesh.vertices[mesh.faces].mean(1)
        outward = np.sum(mesh_lib.face_normals(mesh.vertices, mesh.faces) * centres, -1)
        self.assertTrue(np.all(outward > 0))

    def test_surface_reaching_the_border_is_closed(self):
        # A solid that fills the grid: the padding closes it as the grid's box.
        mesh = mesh_lib.marching_cubes(np.ones([6, 6, 6]), 0.5, spacing=0.2)
        topology = mesh_lib.topology(mesh)
        self.assertTrue(topology.watertight)
        self.assertEqual(topology.euler_characteristic, 2)
        # The box lies between the outer samples (0 and 1) and one step beyond them.
        self.assertTrue(np.all((mesh.vertices.min(0) > -0.2) & (mesh.vertices.min(0) < 0)))
        self.assertTrue(np.all((mesh.vertices.max(0) > 1.0) & (mesh.vertices.max(0) < 1.2)))

    def test_level_not_reached_gives_an_empty_mesh(self):
        self.assertTrue(mesh_lib.marching_cubes(np.zeros([4, 4, 4]), 1.0).is_empty)

    @parameterized.named_parameters(
        ("two_d", np.zeros([4, 4]), "needs a \\[X, Y, Z\\] grid"),
        ("nan", np.full([3, 3, 3], np.nan), "non-finite"),
    )
    def test_rejects_bad_grids(self, values, message):
        with pytest.raises(ValueError, match=message):
            mesh_lib.marching_cubes(values, 0.0)

    def test_topology_finds_holes_and_two_components(self):
        tetra = mesh_lib.Mesh(
            np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
            np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
        )
        self.assertTrue(mesh_lib.topology(tetra).watertight)
        self.assertEqual(mesh_lib.topology(tetra).euler_characteristic, 2)
        open_tetra = mesh_lib.Mesh(tetra.vertices, tetra.faces[:3])
        self.assertEqual(mesh_lib.topology(open_tetra).boundary_edges, 3)
        self.assertFalse(mesh_lib.topology(open_tetra).watertight)
        flipped = mesh_lib.Mesh(tetra.vertices, np.concatenate([tetra.faces[:3], [[1, 3, 2]]]))
        self.assertFalse(mesh_lib.topology(flipped).consistently_oriented)
        two = mesh_lib.Mesh(
            np.concatenate([tetra.vertices, tetra.vertices + 5]),
            np.concatenate([tetra.faces, tetra.faces + 4]),
        )
        self.assertEqual(mesh_lib.topology(two).num_components, 2)
        self.assertEqual(mesh_lib.topology(two).euler_characteristic, 4)


class FilesTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        field = SphereField(radius=0.5)
        config = mesh_extraction.MeshConfig(resolution=32, level=20.0)
        self.mesh = mesh_extraction.extract_mesh(field, np.zeros([2], np.float32), config, 1.0)

    def test_glb_is_gltf2_binary_with_positions_normals_colours_indices(self):
        path = mesh_lib.write_glb(self.mesh, _tmp(self) / "head.glb")
        document = mesh_lib.read_glb_header(path)
        self.assertEqual(document["_version"], 2)
        self.assertEqual(document["asset"]["version"], "2.0")
        (primitive,) = document["meshes"][0]["primitives"]
        attributes = primitive["attributes"]
        self.assertContainsSubset({"POSITION", "NORMAL", "COLOR_0"}, set(attributes))
        self.assertIn("indices", primitive)
        accessors = document["accessors"]
        self.assertEqual(accessors[attributes["POSITION"]]["count"], len(self.mesh.vertices))
        self.assertEqual(accessors[primitive["indices"]]["count"], 3 * len(self.mesh.faces))
        # POSITION accessors must carry min/max (glTF 2.0 requires it; viewers use it).
        self.assertLen(accessors[attributes["POSITION"]]["min"], 3)
        # Re-read with trimesh: same vertex count, turned to glTF's +y up ((x, y, z) -> (x, -y,
        # -z)), same colours.
        scene = trimesh.load(path, process=False)
        (loaded,) = scene.geometry.values()
        self.assertLen(loaded.vertices, len(self.mesh.vertices))
        np.testing.assert_allclose(
            loaded.vertices, self.mesh.vertices * np.array([1, -1, -1]), atol=1e-5
        )
        np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], self.mesh.colors)
        self.assertTrue(loaded.is_watertight)
        self.assertGreater(loaded.volume, 0)  # outward winding survives the turn

    def test_ply_round_trip(self):
        path = mesh_lib.write_ply(self.mesh, _tmp(self) / "head.ply")
        self.assertTrue(path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0"))
        loaded = trimesh.load(path, process=False)
        np.testing.assert_allclose(loaded.vertices, self.mesh.vertices, atol=1e-6)
        np.testing.assert_array_equal(loaded.faces, self.mesh.faces)
        np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], self.mesh.colors)

    @parameterized.named_parameters(
        ("magic", b"glTX" + struct.pack("<II", 2, 20) + b"\0" * 8, "not a GLB"),
        ("short", b"glTF", "too short"),
    )
    def test_read_glb_header_rejects(self, data, message):
        path = _tmp(self) / "bad.glb"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            mesh_lib.read_glb_header(path)


class ExtractionTest(parameterized.TestCase):
    @parameterized.named_parameters(("chunk_large", 100_000), ("chunk_small", 777))
    def test_analytic_sphere(self, chunk_points):
        radius, resolution = 0.6, 40
        config = mesh_extraction.MeshConfig(
            resolution=resolution, level=20.0, chunk_points=chunk_points
        )
        field = SphereField(radius=radius)
        mesh = mesh_extraction.extract_mesh(field, np.array([0.1, 0.0]), config, 1.0)
        step = 2.0 / resolution
        centre = np.array([0.1, 0.0, 0.0])  # the latent moved the ball
        distances = np.linalg.norm(mesh.vertices - centre, axis=-1)
        self.assertLess(np.max(np.abs(distances - radius)), step)  # within a grid cell
        topology = mesh_lib.topology(mesh)
        self.assertTrue(topology.watertight, topology)
        self.assertEqual(topology.euler_characteristic, 2)
        # Colours are the field's rgb a little inside the surface: (x + 1) / 2.
        expected = np.clip((mesh.vertices - 0.5 * step * mesh.normals + 1.0) / 2.0, 0, 1)
        np.testing.assert_allclose(mesh.colors / 255.0, expected, atol=1.0 / 255 + 1e-6)

    def test_grid_is_empty_outside_the_bounding_sphere(self):
        # A field dense everywhere: the sphere bounds it, and the mesh is that sphere.
        config = mesh_extraction.MeshConfig(resolution=24, level=20.0)
        grid = mesh_extraction.density_grid(SphereField(radius=5.0), np.zeros([1]), config, 0.8)
        axis, step = mesh_extraction.grid_axis(24, 0.8)
        x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
        inside = np.sqrt(x**2 + y**2 + z**2) < 0.8
        self.assertTrue(np.all(grid[~inside] == 0))
        self.assertTrue(np.all(grid[inside] > 20.0))
        mesh = mesh_extraction.extract_mesh(SphereField(radius=5.0), np.zeros([1]), config, 0.8)
        distances = np.linalg.norm(mesh.vertices, axis=-1)
        self.assertLess(np.max(np.abs(distances - 0.8)), 1.5 * step)
        self.assertTrue(mesh_lib.topology(mesh).watertight)

    def test_level_above_the_field_gives_an_empty_mesh(self):
        config = mesh_extraction.MeshConfig(resolution=16, level=1000.0)
        mesh = mesh_extraction.extract_mesh(SphereField(), np.zeros([1]), config, 1.0)
        self.assertTrue(mesh.is_empty)
        self.assertEqual(mesh_extraction.mesh_summary(mesh, 1.0)["faces"], 0)

    @parameterized.named_parameters(
        ("resolution", dict(resolution=1), "resolution"),
        ("chunk", dict(chunk_points=0), "chunk_points"),
        ("level", dict(level=0.0), "level"),
        ("offset", dict(color_offset=-1.0), "color_offset"),
    )
    def test_config_rejects(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            mesh_extraction.MeshConfig(**kwargs)


class TrainedModelTest(parameterized.TestCase):
    """A tiny LOLNeRF trained on synthetic heads (infer_testlib, shared in the process)."""

    def test_trained_model_gives_a_mesh_inside_the_sphere(self):
        _, model = infer_testlib.trained()
        radius = model.config.render.scene_radius
        config = mesh_extraction.MeshConfig(resolution=48)
        latent = model.latent_table.embeddings.numpy()[1]
        mesh = mesh_extraction.extract_mesh(model.foreground, latent, config, radius)
        summary = mesh_extraction.mesh_summary(mesh, radius)
        self.assertGreater(summary["faces"], 500)
        step = 2.0 * radius / config.resolution
        self.assertLessEqual(summary["max_vertex_radius"], radius + np.sqrt(3) * step)
        self.assertTrue(summary["watertight"], summary)
        # The head is in front of the background: some of the field is empty space.
        grid = mesh_extraction.density_grid(model.foreground, latent, config, radius)
        inside = grid[grid > 0]
        self.assertGreater(np.mean(inside < config.level), 0.05)
        self.assertGreater(np.mean(inside > config.level), 0.05)
        path = mesh_lib.write_glb(mesh, _tmp(self) / "head.glb")
        (loaded,) = trimesh.load(path, process=False).geometry.values()
        self.assertLen(loaded.vertices, len(mesh.vertices))
