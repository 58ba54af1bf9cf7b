"""The stages of bench/gpu_run.py (the GPU-loan command), one module each, and what they share (common)."""
