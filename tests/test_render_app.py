"""Tests for `python -m tfglo.render`: orbits, interpolations and samples of a saved run."""

import contextlib
import io

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfglo import render
from tfglo.engine import views
from tfglo.geometry import mesh as mesh_lib
from tfglo.nerf import image_renderer, mesh_extraction


class RenderAppTest(infer_testlib.TrainedRunTestCase):
    def _app(self, *args):
        return infer_testlib.run_app(render, [f"--run_dir={self.run_dir}", *args])

    def test_orbit(self):
        self._app(
            f"--output={self.out}", "--mode=orbit", "--ids=0,2", "--num_frames=3", "--image_size=8"
        )
        for name in ("id_0000", "id_0002"):
            directory = self.out / name
            self.assertTrue((directory / "orbit.gif").is_file())
            self.assertTrue((directory / "depth_002.npy").is_file())
            with Image.open(directory / "frame_001.png") as frame:
                self.assertEqual(frame.size, (8, 8))
        # The restored table renders like the in-memory model.
        view = views.default_view(None, self.path, image_size=8)
        frames = views.render_orbit(self.model, self.model.latent_table.embeddings[2], view, 3)
        saved = np.load(self.out / "id_0002" / "depth_001.npy")
        np.testing.assert_allclose(saved, frames[1]["depth"], atol=1e-4)

    def test_accelerated_by_default_exact_with_noaccelerate(self):
        args = ["--mode=orbit", "--ids=1", "--num_frames=2", "--image_size=12"]
        self._app(f"--output={self.out}/fast", *args)
        self._app(f"--output={self.out}/exact", *args, "--noaccelerate")
        view = views.default_view(None, self.path, image_size=12)
        latent = self.model.latent_table.embeddings[1]
        depths = {}
        for accelerate in (True, False):
            renderer = image_renderer.ImageRenderer(self.model, accelerate=accelerate)
            depths[accelerate] = [
                views.camera_z_depth(renderer(latent, cam, 12, 12)["depth"], cam, 12, 12)
                for cam in views.orbit_cameras(view, 2)
            ]
        # The two renderers differ (sample positions), so matching one of them says which ran.
        self.assertGreater(np.abs(depths[True][1] - depths[False][1]).max(), 1e-5)
        for name, accelerate in (("fast", True), ("exact", False)):
            for i in range(2):
                saved = np.load(self.out / name / "id_0001" / f"depth_{i:03d}.npy")
                np.testing.assert_allclose(saved, depths[accelerate][i], atol=2e-6, err_msg=name)
        # The render settings reach the accelerated renderer, and only it.
        with pytest.raises(Exception, match="occupancy_resolution"):
            self._app(f"--output={self.out}/bad", *args, "--occupancy_resolution=1")
        self._app(f"--output={self.out}/bad", *args, "--occupancy_resolution=1", "--noaccelerate")

    def test_orbit_of_codes_from_a_file(self):
        codes = self.out / "codes.npy"
        np.save(codes, self.model.latent_table.embeddings.numpy()[:1] * 0.5)
        self._app(f"--output={self.out}", f"--latents={codes}", "--num_frames=2", "--image_size=8")
        self.assertTrue((self.out / "latent_0000" / "orbit.gif").is_file())

    def test_interpolate(self):
        self._app(
            f"--output={self.out}",
            "--mode=interpolate",
            "--ids=1,3",
            "--num_frames=4",
            "--image_size=8",
        )
        directory = self.out / "interpolate_id_0001_id_0003"
        self.assertTrue((directory / "strip.png").is_file())
        self.assertTrue((directory / "depth_strip.png").is_file())
        with Image.open(directory / "interpolate.gif") as gif:
            self.assertEqual(gif.n_frames, 6)  # there and back: 4 + 2
        with pytest.raises(Exception, match="exactly two --ids"):
            self._app(f"--output={self.out}", "--mode=interpolate", "--ids=0,1,2")

    def test_sample(self):
        args = ["--mode=sample", "--num_samples=3", "--seed=5", "--image_size=8"]
        self._app(f"--output={self.out}/a", *args)
        self._app(f"--output={self.out}/b", *args)
        first = np.load(self.out / "a" / "samples" / "latents.npy")
        self.assertEqual(first.shape, (3, 8))
        np.testing.assert_array_equal(first, np.load(self.out / "b" / "samples" / "latents.npy"))
        self.assertTrue((self.out / "a" / "samples" / "grid.png").is_file())
        self.assertTrue((self.out / "a" / "samples" / "depth_002.npy").is_file())

    def test_mesh(self):
        import trimesh

        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            self._app(
                f"--output={self.out}",
                "--mode=mesh",
                "--ids=0,2",
                "--mesh_resolution=24",
                "--mesh_level=5",
            )
        printed = output.getvalue()
        step = 2.0 / 24
        for name in ("id_0000", "id_0002"):
            ply = trimesh.load(self.out / name / "mesh.ply", process=False)
            self.assertGreater(len(ply.faces), 0)
            # Inside the unit bounding sphere, up to a grid step.
            self.assertLessEqual(np.linalg.norm(ply.vertices, axis=-1).max(), 1.0 + step)
            self.assertEqual(mesh_lib.read_glb_header(self.out / name / "mesh.glb")["_version"], 2)
            self.assertIn(f"{name}: {len(ply.vertices)} vertices, {len(ply.faces)} faces", printed)
        # The restored run meshes like the in-memory model, with the flags' settings.
        mesh = mesh_extraction.extract_mesh(
            self.model.foreground,
            self.model.latent_table.embeddings[2],
            mesh_extraction.MeshConfig(resolution=24, level=5.0),
            1.0,
        )
        closed = "watertight" if mesh_lib.topology(mesh).watertight else "not watertight"
        self.assertIn(
            f"id_0002: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {closed}:", printed
        )

    def test_run_dir_without_checkpoints(self):
        from tfglo.engine import run_dir as run_dir_lib

        empty = infer_testlib.save_run(
            self.model, self.path, self.out / "empty", with_checkpoint=False
        )
        with pytest.raises(run_dir_lib.RunDirError, match="has no checkpoint"):
            infer_testlib.run_app(render, [f"--run_dir={empty}", f"--output={self.out}"])


if __name__ == "__main__":
    tf.test.main()
