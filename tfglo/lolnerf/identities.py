"""LOLNeRF identities: codes from the trained latent table, and new ones sampled from it.

A trained LOLNeRF holds one code per training image (or object) in its latent table `[M, D]`.
`select_latents` picks rows of the table or of a `.npy` file of codes (e.g. the `latents.npy` that
`tfglo.evaluate --invert` writes); `interpolation_latents` walks linearly between two codes;
`sample_identities` draws new codes from a Gaussian fitted to the table (DESIGN.md section 6).
`python -m tfglo.render` renders them with `tfglo.engine.views`.
"""

import pathlib

import numpy as np
import tensorflow as tf

from tfglo.lolnerf import latents


def table_latents(model) -> np.ndarray:
    """The model's trained latent table `[M, D]` as numpy."""
    return np.asarray(model.latent_table.embeddings, np.float32)


def select_latents(model, ids=None, latents_file=None) -> tuple[np.ndarray, list[str]]:
    """Codes to render and their names.

    Args:
      model: the trained model (its table is used unless `latents_file` is given).
      ids: row indices (of the table or of the file); all rows of a file / row 0 of the table
        when None.
      latents_file: optional `.npy` file of codes `[K, D]` (or `[D]`).

    Returns:
      (codes `[K, D]`, names such as "id_0003" or "latent_0001").

    Raises:
      ValueError: a file that is not `[K, D]` with the model's D, or an id out of range.
    """
    table = table_latents(model)
    dim = table.shape[1]
    if latents_file is not None:
        path = pathlib.Path(latents_file)
        if not path.is_file():
            raise ValueError(f"latents file {path} does not exist")
        source = np.load(path).astype(np.float32)
        if source.ndim == 1:
            source = source[None]
        if source.ndim != 2 or source.shape[1] != dim:
            raise ValueError(
                f"latents file {path} holds shape {source.shape}; this run's codes are [K, {dim}]"
            )
        prefix = "latent"
    else:
        source, prefix = table, "id"
    if ids is None:
        ids = list(range(len(source))) if latents_file is not None else [0]
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < len(source)]
    if bad:
        where = f"file {latents_file}" if latents_file is not None else "the latent table"
        raise ValueError(f"ids {bad} out of range: {where} has {len(source)} rows")
    return source[ids], [f"{prefix}_{i:04d}" for i in ids]


def interpolation_latents(latent_a, latent_b, num_frames: int) -> np.ndarray:
    """Linear path `[num_frames, D]` from code a to code b, endpoints included."""
    return np.asarray(latents.interpolate(latent_a, latent_b, num_frames), np.float32)


def sample_identities(
    table, count: int, seed: int = 0, truncation: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New codes from a Gaussian fitted to a trained latent table.

    Args:
      table: `[M, D]` trained codes.
      count: number of codes.
      seed: integer seed (the same seed gives the same codes).
      truncation: scales the deviation from the mean (0: the mean; 1: the table's spread).

    Returns:
      (codes `[count, D]`, fitted mean `[D]`, fitted covariance `[D, D]`).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if truncation < 0:
        raise ValueError(f"truncation must be >= 0, got {truncation}")
    mean, covariance = latents.fit_gaussian(table)
    codes = latents.sample_latents(
        mean, covariance, count, tf.constant([seed, 0], tf.int64), truncation
    )
    return np.asarray(codes), np.asarray(mean), np.asarray(covariance)
