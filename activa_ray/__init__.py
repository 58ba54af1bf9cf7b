"""activa_ray: amortized causal inference (ACTIVA) at scale with Ray."""

__version__ = "0.1.0"
