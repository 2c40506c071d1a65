"""Benchmarks of the generated losses against torch eager and torch.compile: ``python -m benchmarks``."""
