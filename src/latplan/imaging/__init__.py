"""Imaging I/O and geometry: `Volume` (array + LPS-mm affine), readers, writers, resampling."""

from latplan.imaging.volume import Volume

__all__ = ["Volume"]
