"""NeRF-VAE: a variational auto-encoder whose decoder is the shared conditioned NeRF (a model
family): the view encoder, the posterior over a scene from its context views."""
