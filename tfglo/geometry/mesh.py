"""Triangle meshes: marching cubes on a sampled scalar field, closedness checks, PLY / GLB files.

The pure-geometry half of mesh extraction (`tfglo.nerf.mesh_extraction` samples a field onto a
grid and calls `marching_cubes` here). Marching cubes is scikit-image's (`measure.marching_cubes`,
Lewiner's variant, which shares vertices between neighbouring cells, so a closed level set gives
a closed, edge-manifold mesh); PLY and GLB files are written by trimesh.

Frames: meshes live in the package's canonical frame (object units; +y down, faces look towards
-z, see `tfglo.geometry.camera`). PLY files keep that frame, so a mesh lines up with the dataset's
cameras. glTF fixes +y up and the front of an asset towards +z, so GLB files are turned by 180
degrees about x ((x, y, z) -> (x, -y, -z), a rotation: the winding stays counter-clockwise seen
from outside); a browser's model viewer then shows a face upright and facing the viewer.

Pure numpy (trimesh and scikit-image are imported inside the functions that use them).
"""

import dataclasses
import os
import pathlib

import numpy as np

# Package frame -> glTF frame (+y up, front towards +z): a 180-degree turn about x.
GLTF_FROM_CANONICAL = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass
class Mesh:
    """An indexed triangle mesh.

    Attributes:
      vertices: `[V, 3]` float32, object units.
      faces: `[F, 3]` int32 vertex indices, counter-clockwise seen from outside (normals out).
      normals: `[V, 3]` float32 unit outward vertex normals, or None.
      colors: `[V, 3]` uint8 sRGB vertex colours, or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, np.float32).reshape(-1, 3)
        self.faces = np.asarray(self.faces, np.int32).reshape(-1, 3)
        if self.normals is not None:
            self.normals = np.asarray(self.normals, np.float32).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.asarray(self.colors, np.uint8).reshape(-1, 3)
        for name in ("normals", "colors"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.vertices):
                raise ValueError(
                    f"Mesh {name} has {len(value)} rows for {len(self.vertices)} vertices"
                )
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError(f"Mesh faces index outside [0, {len(self.vertices)})")

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0

    @classmethod
    def empty(cls) -> "Mesh":
        return cls(np.zeros([0, 3], np.float32), np.zeros([0, 3], np.int32))


def marching_cubes(
    values: np.ndarray,
    level: float,
    origin=(0.0, 0.0, 0.0),
    spacing: float = 1.0,
    inside: str = "above",
) -> Mesh:
    """Extracts the level set `values == level` of a regular grid as a triangle mesh.

    The grid is padded by one cell of "outside" values before marching, so a surface that
    reaches the grid's border is closed there instead of left open.

    Args:
      values: `[X, Y, Z]` float samples; `values[i, j, k]` is at
        `origin + spacing * (i, j, k)` (x along axis 0).
      level: the iso value.
      origin: `[3]` world position of `values[0, 0, 0]`, object units.
      spacing: grid step, object units.
      inside: "above" (the solid is where values > level, e.g. density) or "below" (e.g. a
        signed distance); faces are wound and normals point out of the solid either way.

    Returns:
      A `Mesh` with vertices, faces and outward normals (no colours); `Mesh.empty()` when no
      sample lies inside (a grid that is all inside gives the closed box of its border).

    Raises:
      ValueError: `values` is not 3-D, holds non-finite values, or `inside` is unknown.
    """
    from skimage import measure  # Lazy: only mesh extraction needs scikit-image.

    values = np.asarray(values, np.float32)
    if values.ndim != 3:
        raise ValueError(f"marching_cubes needs a [X, Y, Z] grid, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("marching_cubes: the grid holds non-finite values")
    if inside not in ("above", "below"):
        raise ValueError(f"inside must be 'above' or 'below', got {inside!r}")
    solid = values > level if inside == "above" else values < level
    if not solid.any():
        return Mesh.empty()
    # Work on "density-like" values (solid above the level) so that one orientation rule holds.
    field = values if inside == "above" else 2.0 * level - values
    outside_value = min(float(field.min()), level) - 1.0
    padded = np.pad(field, 1, constant_values=outside_value)
    vertices, faces, normals, _ = measure.marching_cubes(
        padded, level=level, spacing=(spacing,) * 3, allow_degenerate=False
    )
    vertices = vertices + (np.asarray(origin, np.float64) - spacing)  # undo the padding
    mesh = Mesh(vertices, faces, normals)
    # scikit-image's normal sign and winding follow its gradient convention; orient both by the
    # outward direction (minus the gradient of the solid-above field) so the result does not
    # depend on that convention.
    if len(mesh.faces):
        outward = -_grid_gradient(padded, spacing, vertices - (np.asarray(origin) - spacing))
        if np.mean(np.sum(outward * mesh.normals, -1)) < 0:
            mesh.normals = -mesh.normals
        if _mean_face_alignment(mesh) < 0:
            mesh.faces = mesh.faces[:, ::-1].copy()
    return mesh


def _grid_gradient(values: np.ndarray, spacing: float, points: np.ndarray) -> np.ndarray:
    """Central-difference gradient at the grid sample nearest to each point, `[P, 3]`.

    Only at those samples (not `np.gradient` of the whole grid: three more grid-sized arrays).
    """
    shape = np.array(values.shape)
    index = np.clip(np.round(points / spacing).astype(np.int64), 1, shape - 2)
    i, j, k = index.T
    return np.stack(
        [
            values[i + 1, j, k] - values[i - 1, j, k],
            values[i, j + 1, k] - values[i, j - 1, k],
            values[i, j, k + 1] - values[i, j, k - 1],
        ],
        -1,
    ) / (2.0 * spacing)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (cross products, length = 2 x area), `[F, 3]`."""
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return np.cross(b - a, c - a)


def _mean_face_alignment(mesh: Mesh) -> float:
    """Mean over faces of (face normal . mean vertex normal): > 0 when the winding is outward."""
    normals = face_normals(mesh.vertices, mesh.faces)
    vertex_normals = mesh.normals[mesh.faces].mean(1)
    return float(np.mean(np.sum(normals * vertex_normals, -1)))


@dataclasses.dataclass(frozen=True)
class Topology:
    """Closedness of a triangle mesh.

    Attributes:
      num_vertices, num_edges, num_faces: counts (edges are unordered vertex pairs).
      boundary_edges: edges used by one face only (holes).
      nonmanifold_edges: edges used by three or more faces.
      euler_characteristic: V - E + F (2 for one closed surface of genus 0).
      num_components: connected pieces (faces that share an edge are connected).
      consistently_oriented: every interior edge is traversed in opposite directions by its two
        faces (the winding agrees across the whole surface).
    """

    num_vertices: int
    num_edges: int
    num_faces: int
    boundary_edges: int
    nonmanifold_edges: int
    euler_characteristic: int
    num_components: int
    consistently_oriented: bool

    @property
    def watertight(self) -> bool:
        """Every edge is shared by exactly two faces, with consistent winding."""
        return (
            self.num_faces > 0
            and self.boundary_edges == 0
            and self.nonmanifold_edges == 0
            and self.consistently_oriented
        )


def topology(mesh: Mesh) -> Topology:
    """Counts edges per face pair, Euler characteristic and components of `mesh`."""
    faces = mesh.faces.astype(np.int64)
    used = np.unique(faces)
    if len(faces) == 0:
        return Topology(0, 0, 0, 0, 0, 0, 0, True)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, 1)
    edges, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # A consistently wound closed surface uses each directed edge exactly once.
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    oriented = bool(np.all(directed_counts == 1))
    # Components: union-find over faces joined by shared edges.
    num_faces = len(faces)
    face_of = np.tile(np.arange(num_faces), 3)
    parent = np.arange(num_faces)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(inverse, kind="stable")
    sorted_edges = inverse[order]
    sorted_faces = face_of[order]
    same = np.flatnonzero(sorted_edges[1:] == sorted_edges[:-1])
    for k in same:
        a, b = find(sorted_faces[k]), find(sorted_faces[k + 1])
        if a != b:
            parent[a] = b
    roots = {find(i) for i in range(num_faces)}
    return Topology(
        num_vertices=int(len(used)),
        num_edges=int(len(edges)),
        num_faces=int(num_faces),
        boundary_edges=int(np.sum(counts == 1)),
        nonmanifold_edges=int(np.sum(counts > 2)),
        euler_characteristic=int(len(used) - len(edges) + num_faces),
        num_components=len(roots),
        consistently_oriented=oriented,
    )


def _trimesh(mesh: Mesh, transform: np.ndarray | None = None):
    import trimesh  # Lazy: only file writing needs trimesh.

    vertices = mesh.vertices.astype(np.float64)
    normals = mesh.normals
    if transform is not None:
        vertices = vertices @ transform.T
        normals = None if normals is None else normals @ transform.T
    kwargs = {}
    if mesh.colors is not None:
        alpha = np.full([len(mesh.colors), 1], 255, np.uint8)
        kwargs["vertex_colors"] = np.concatenate([mesh.colors, alpha], -1)
    if normals is not None:
        kwargs["vertex_normals"] = normals
    # process=False: keep the vertices and faces exactly as given (no merging or reordering).
    return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False, **kwargs)


def write_ply(mesh: Mesh, path: os.PathLike | str) -> pathlib.Path:
    """Writes binary little-endian PLY (positions, normals, RGBA colours, faces), package frame."""
    path = pathlib.Path(path)
    data = _trimesh(mesh).export(file_type="ply", encoding="binary", include_attributes=True)
    path.write_bytes(data)
    return path


def write_glb(mesh: Mesh, path: os.PathLike | str) -> pathlib.Path:
    """Writes a glTF 2.0 binary (POSITION, NORMAL, COLOR_0, indices), turned to glTF's +y up."""
    path = pathlib.Path(path)
    data = _trimesh(mesh, GLTF_FROM_CANONICAL).export(
        file_type="glb", include_normals=mesh.normals is not None
    )
    path.write_bytes(data)
    return path


def read_glb_header(path: os.PathLike | str) -> dict:
    """Parses a GLB's 12-byte header and JSON chunk (the glTF document), without trimesh.

    Returns:
      The glTF JSON as a dict, plus "_version" and "_length" from the binary header.

    Raises:
      ValueError: the file is not a glTF binary (bad magic, version or chunk type).
    """
    import json
    import struct

    data = pathlib.Path(path).read_bytes()
    if len(data) < 20:
        raise ValueError(f"{path}: {len(data)} bytes is too short for a GLB file")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise ValueError(f"{path}: not a GLB file (magic {magic!r})")
    if length != len(data):
        raise ValueError(f"{path}: header length {length} != file size {len(data)}")
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    if chunk_type != b"JSON":
        raise ValueError(f"{path}: first chunk is {chunk_type!r}, not JSON")
    document = json.loads(data[20 : 20 + chunk_length].decode("utf-8"))
    document["_version"] = version
    document["_length"] = length
    return document
