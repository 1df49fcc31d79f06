"""LOLNeRF: a NeRF conditioned on a per-image latent table learned by GLO (a model family:
`family`, with `model`, `latents`, `config`, `summaries`, `serving`, `benchmarks`)."""
