"""What every model family shares: positional encoding, conditioned fields, samplers, the volume
renderer, the whole-image (chunked) renderer and the shared loss terms."""
