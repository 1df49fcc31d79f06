"""tfglo: 3D models of object classes from single views (LOLNeRF, NeRF-VAE) in TensorFlow.

Importing the package is cheap and side-effect free: it imports no TensorFlow module that
initialises devices (tensorflow-graphics is imported lazily inside the functions that use it), so
a program can still configure logical devices after `import tfglo`.
"""

__version__ = "0.1.0"

# The model families, name -> "module:attribute" of a `tfglo.engine.family.ModelFamily`. Resolved
# by `tfglo.engine.family.get_family`, which imports a family's module only when it is asked for;
# a run directory's config.json names its family with one of these keys.
MODEL_FAMILIES = {
    "lolnerf": "tfglo.lolnerf.family:FAMILY",
    "nerf_vae": "tfglo.nerf_vae.family:FAMILY",
}
