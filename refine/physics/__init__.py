"""Batched, differentiable powder-diffraction forward model."""
