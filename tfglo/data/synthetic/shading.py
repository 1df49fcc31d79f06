"""Colours of surfaces and backgrounds: Lambertian shading, environments, random palettes.

Shading is Lambertian plus ambient under a light fixed in the world, so the colour of a surface
point does not depend on the view (as the model assumes). Backgrounds are environments at
infinity (a function of the ray direction only), so every view of an object sees the same one: a
constant colour, or a two-colour gradient along a world direction.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Lighting:
    """A directional light plus ambient.

    Attributes:
      direction: `[3]` unit vector towards the light, world.
      ambient: ambient fraction of the lighting in [0, 1].
    """

    direction: np.ndarray
    ambient: float


def shade(colors: np.ndarray, primitive: np.ndarray, normals: np.ndarray, lighting: Lighting):
    """Lambertian + ambient colours `[N, 3]` in [0, 1] of hits.

    Args:
      colors: `[P, 3]` albedo of the primitives, sRGB in [0, 1].
      primitive: `[N]` index of the primitive hit (>= 0 where used; misses read primitive 0).
      normals: `[N, 3]` unit normals facing the viewer.
      lighting: the light.
    """
    lambert = np.maximum(normals @ lighting.direction, 0.0)
    light = lighting.ambient + (1.0 - lighting.ambient) * lambert
    return colors[np.maximum(primitive, 0)] * light[:, None]


def gradient_background(
    directions: np.ndarray, colors: np.ndarray, direction: np.ndarray, spread: float
) -> np.ndarray:
    """Environment colour `[N, 3]` of unit world directions `[N, 3]`: a linear blend of two
    colours `[2, 3]` along `direction` `[3]`, over +-`spread` of the direction cosine (equal
    colours: solid)."""
    s = directions @ direction
    w = np.clip(0.5 + 0.5 * s / spread, 0.0, 1.0)[:, None]
    return (1.0 - w) * colors[0] + w * colors[1]


def blend(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    """A random blend of two neighbouring palette colours `[K, 3]` plus a small jitter, in
    [0, 1]."""
    i = rng.integers(len(palette) - 1)
    w = rng.uniform()
    color = (1 - w) * palette[i] + w * palette[i + 1]
    return np.clip(color + rng.normal(0.0, jitter, 3), 0.0, 1.0)


def hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """sRGB `[3]` of a colour given as hue, saturation, value in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def random_color(
    rng: np.random.Generator,
    saturation: tuple[float, float] = (0.1, 0.7),
    value: tuple[float, float] = (0.25, 0.95),
) -> np.ndarray:
    """A colour of uniform random hue, saturation and value in the given ranges, sRGB `[3]`."""
    hue = rng.uniform()
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    return hsv_to_rgb(hue, s, v)
