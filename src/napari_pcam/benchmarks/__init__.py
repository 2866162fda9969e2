"""Reproducible benchmarks of napari-pcam's algorithms against reference formulations."""
