"""Where a plan's treatment region meets the edge of the scan: the ``fov_*`` keys of a plan's metrics.

Found on a real CT (TotalSegmentator's example, 3 mm) with a 25 mm lesion inserted at the liver's default
"deepest point", 9 mm below the scan's top face: the MWA zone (50 ml) was clipped by the image and its
margin "8.5 mm, reaches" read off the part shown; the IBT CTV (lesion + 10 mm) passed the face, so its
D100 was taken over the part inside the image. What lies beyond the image (the zone, the dose, the
organs) is not shown, so such a plan is conditional: ``fov_limited`` (the board's target is then at best
"uncertain", tier kept: :mod:`latplan.board.targets`). ECT/IRE continue the edge tissue beyond the image
and report the same keys themselves (:mod:`latplan.planning.electroporation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latplan.case import Case
from latplan.imaging.fov import faces_reached_beyond, faces_touched

__all__ = ["fov_check"]


def fov_check(case: Case, lesion_full: np.ndarray, reach_mm: float, what: str,
              zone: np.ndarray | None = None, lo: tuple[int, int, int] = (0, 0, 0)) -> dict[str, Any]:
    """The ``fov_*`` metrics of a plan: ``lesion_full`` (on the case grid) grown by ``reach_mm`` (its
    target: lesion + margin, or the CTV/PTV; named ``what`` in the note) passes an image face
    (:func:`~latplan.imaging.fov.faces_reached_beyond`, with how far), or the predicted ``zone`` (on a crop
    of the case grid starting at index ``lo``) reaches a face: it is cut there and the margin towards it
    is not seen. Keys: ``fov_limited``, ``fov_limited_faces``, ``fov_extension_mm`` (the target's
    overshoot; 0.0 when only the zone is cut or nothing is), ``fov_zone_cut_faces``, ``fov_limited_note``
    (the condition in words; empty when not limited)."""
    h = np.asarray(case.labels.spacing_kji_mm, float)
    beyond = faces_reached_beyond(lesion_full, reach_mm, h, case.labels.affine)
    cut = [] if zone is None else faces_touched(zone, case.labels.affine, lo, case.labels.shape)
    faces = list(dict.fromkeys([*beyond, *cut]))
    parts = [f"{what} extends {mm:g} mm beyond the {f} face" for f, mm in beyond.items()]
    parts += [f"the predicted zone is cut by the {f} face" for f in cut if f not in beyond]
    note = ("conditional — field of view: " + "; ".join(parts) + " of the image, where neither the plan nor "
            "what lies there is shown; image the whole treatment region to confirm") if faces else ""
    return {"fov_limited": bool(faces), "fov_limited_faces": faces,
            "fov_extension_mm": max(beyond.values()) if beyond else 0.0,
            "fov_zone_cut_faces": cut, "fov_limited_note": note}
