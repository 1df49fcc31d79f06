"""Paths of the MediaPipe model files, bundled with the package and checked by sha256.

The MediaPipe Tasks API ships no models. tfglo bundles the two it needs (Apache-2.0, see
`tfglo/pose/assets/NOTICE`) so that it works offline. Users may bring other files: pass a path
explicitly (the prepare app's `--face_landmarker_model` / `--selfie_segmenter_model` flags) or set
the environment variables below. A user's own file is not hash-checked (it is theirs to choose);
a bundled file that does not match its recorded hash raises, since it means a broken install.
"""

import dataclasses
import hashlib
import os
import pathlib

ASSETS_DIR = pathlib.Path(__file__).resolve().parent / "assets"


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A bundled model file: its name in `tfglo/pose/assets`, sha256 and override variable."""

    filename: str
    sha256: str
    env_var: str


FACE_LANDMARKER = ModelFile(
    "face_landmarker.task",
    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    "TFGLO_FACE_LANDMARKER_MODEL",
)
SELFIE_SEGMENTER = ModelFile(
    "selfie_segmentation.tflite",
    "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    "TFGLO_SELFIE_SEGMENTER_MODEL",
)


class ModelFileError(RuntimeError):
    """A model file is missing or does not match its recorded hash."""


def sha256_of(path: os.PathLike | str) -> str:
    """Returns the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(model: ModelFile, override: os.PathLike | str | None = None) -> pathlib.Path:
    """Returns the path of a model file.

    Args:
      model: which model (`FACE_LANDMARKER` or `SELFIE_SEGMENTER`).
      override: a user's file; when None, the environment variable `model.env_var` is consulted,
        and when that is unset or empty, the bundled file is used.

    Returns:
      An existing file path.

    Raises:
      ModelFileError: the override does not exist, or the bundled file is missing or corrupt.
    """
    override = override or os.environ.get(model.env_var) or None
    if override is not None:
        path = pathlib.Path(override).expanduser()
        if not path.is_file():
            raise ModelFileError(f"{model.filename} override {str(path)!r} is not a file")
        return path
    path = ASSETS_DIR / model.filename
    if not path.is_file():
        raise ModelFileError(f"bundled model file {path} is missing: reinstall tfglo")
    digest = sha256_of(path)
    if digest != model.sha256:
        raise ModelFileError(
            f"bundled model file {path} has sha256 {digest}, expected {model.sha256}: "
            "the install is corrupt, reinstall tfglo"
        )
    return path
