"""One base exception for the whole package, with specific subclasses.

Why: callers (CLI, web app, tests) catch :class:`LatplanError` and show its message to
a clinician or physicist; every message says what is wrong, where, and how to fix it.
A traceback from deep inside numpy is never the user-facing error.
"""

from __future__ import annotations


class LatplanError(Exception):
    """Base class of every error latplan raises on purpose."""


class InvalidInputError(LatplanError, ValueError):
    """A value given by the user (file, YAML field, parameter) is not acceptable."""


class InvalidImageError(InvalidInputError):
    """An image or label map cannot be used (NaN/zero spacing, bad affine, empty array...)."""


class GeometryMismatchError(InvalidInputError):
    """Two grids that must share geometry do not (shape, spacing, origin or direction)."""


class OrientationError(GeometryMismatchError):
    """An orientation is inconsistent (e.g. RAS data presented as LPS, flipped axis)."""


class EmptyStructureError(InvalidInputError):
    """A structure mask that must hold voxels is empty (or too small to measure)."""


class UnknownStructureError(InvalidInputError):
    """A structure or label name is not in the vocabulary or the label table."""


class DicomError(InvalidInputError):
    """A DICOM file or series is unusable (truncated, mixed series, missing slice, tilt...)."""


class CaseFolderError(InvalidInputError):
    """A case folder is incomplete or inconsistent (missing case.yaml, image, labels...)."""


class PhantomSpecError(InvalidInputError):
    """A phantom spec cannot be satisfied (lesion leaves the liver, unknown structure...)."""


class SourceDataError(InvalidInputError):
    """A brachytherapy source file or a device chart is malformed."""


class OutOfRangeError(LatplanError, ValueError):
    """A request lies outside the data a model is valid for (e.g. chart extrapolation)."""


class PlanningError(LatplanError):
    """A simulation or optimisation could not produce a plan (with the reason)."""


class InfeasiblePlanError(PlanningError):
    """Constraints cannot all be met; ``limiting`` names the one that blocks."""

    def __init__(self, message: str, limiting: str | None = None) -> None:
        super().__init__(message)
        self.limiting = limiting


class KnowledgeError(LatplanError):
    """A rule file is malformed (missing citation, unknown condition, duplicate id...)."""


class NotAvailableError(LatplanError):
    """A capability that this release does not provide was asked for."""


class UnknownModalityError(InvalidInputError):
    """A modality code that latplan.modalities does not know."""
