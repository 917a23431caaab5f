"""The PXRD-conditioned diffusion generator: denoiser, diffusion, sampler, training, shipped weights."""
