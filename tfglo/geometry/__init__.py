"""Cameras, rays, projection and bounding-sphere intersection (pure functions, OpenCV
convention)."""
