"""Smoke tests that fail on a broken install of the pinned stack."""

import subprocess
import sys

import numpy as np
import pytest

from tfglo.pose import model_files


def test_tensorflow_and_keras3():
    import keras
    import tensorflow as tf

    assert tf.__version__.startswith("2.21."), tf.__version__
    assert int(keras.__version__.split(".")[0]) == 3, keras.__version__
    layer = keras.layers.Dense(2)
    assert layer(np.ones([1, 3], np.float32)).shape == (1, 2)


def test_bundled_model_files_resolve_and_match_hashes():
    for model in (model_files.FACE_LANDMARKER, model_files.SELFIE_SEGMENTER):
        path = model_files.resolve(model)
        assert path.is_file()
        assert model_files.sha256_of(path) == model.sha256


def test_model_file_override_and_errors(tmp_path, monkeypatch):
    own = tmp_path / "my.task"
    own.write_bytes(b"not checked")
    assert model_files.resolve(model_files.FACE_LANDMARKER, own) == own
    monkeypatch.setenv(model_files.FACE_LANDMARKER.env_var, str(own))
    assert model_files.resolve(model_files.FACE_LANDMARKER) == own
    monkeypatch.setenv(model_files.FACE_LANDMARKER.env_var, str(tmp_path / "missing.task"))
    with pytest.raises(model_files.ModelFileError, match="is not a file"):
        model_files.resolve(model_files.FACE_LANDMARKER)


def test_corrupt_bundled_file_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "face_landmarker.task").write_bytes(b"corrupt")
    monkeypatch.setattr(model_files, "ASSETS_DIR", tmp_path)
    monkeypatch.delenv(model_files.FACE_LANDMARKER.env_var, raising=False)
    with pytest.raises(model_files.ModelFileError, match="sha256"):
        model_files.resolve(model_files.FACE_LANDMARKER)


def test_mediapipe_finds_a_face_and_a_mask(faces_dir):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from PIL import Image, ImageOps

    photo = ImageOps.exif_transpose(Image.open(faces_dir / "img1.jpg")).convert("RGB")
    array = np.asarray(photo)
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=array)
    landmarker_options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(
            model_asset_path=str(model_files.resolve(model_files.FACE_LANDMARKER))
        ),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=2,
        output_facial_transformation_matrixes=True,
    )
    with vision.FaceLandmarker.create_from_options(landmarker_options) as landmarker:
        result = landmarker.detect(image)
    assert len(result.face_landmarks) == 1
    assert len(result.face_landmarks[0]) == 478
    assert np.asarray(result.facial_transformation_matrixes[0]).shape == (4, 4)

    segmenter_options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(
            model_asset_path=str(model_files.resolve(model_files.SELFIE_SEGMENTER))
        ),
        running_mode=vision.RunningMode.IMAGE,
        output_confidence_masks=True,
    )
    with vision.ImageSegmenter.create_from_options(segmenter_options) as segmenter:
        masks = segmenter.segment(image).confidence_masks
    mask = masks[-1].numpy_view()
    assert mask.shape[:2] == array.shape[:2]
    # The nose tip (landmark 1) lies on the person.
    nose = result.face_landmarks[0][1]
    row = int(nose.y * array.shape[0])
    col = int(nose.x * array.shape[1])
    assert mask[row, col] > 0.5


def test_tensorflow_graphics_rotation_agrees_with_hand_made():
    from tensorflow_graphics.geometry.transformation import rotation_matrix_3d

    angle = 0.3
    hand = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]],
        np.float32,
    )
    ours = rotation_matrix_3d.from_euler(np.array([0.0, 0.0, angle], np.float32)).numpy()
    np.testing.assert_allclose(ours, hand, atol=1e-6)
    # A wrong axis would not agree.
    other = rotation_matrix_3d.from_euler(np.array([angle, 0.0, 0.0], np.float32)).numpy()
    assert np.abs(other - hand).max() > 0.1


_IMPORT_ALL = r"""
import importlib, pkgutil, sys
import tfglo
for info in pkgutil.walk_packages(tfglo.__path__, "tfglo."):
    importlib.import_module(info.name)
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
assert len(tf.config.list_logical_devices("CPU")) == 2
assert "tensorflow_addons" not in sys.modules, "tensorflow_addons was imported"
assert "tensorflow_graphics" not in sys.modules, "tensorflow_graphics imported eagerly"
print("OK")
"""


def test_importing_tfglo_leaves_devices_configurable():
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout
