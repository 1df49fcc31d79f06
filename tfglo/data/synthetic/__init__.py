"""Built-in procedural object classes with full ground truth (numpy ray casting)."""
