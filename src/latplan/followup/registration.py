"""Register a follow-up image to the baseline (SimpleITK): rigid, then affine.

Convention: the *fixed* image is the baseline, the *moving* one the follow-up. The stored
transform ``T`` maps a baseline LPS point (mm) to the follow-up LPS point of the same
tissue (ITK's fixed→moving convention), so resampling the follow-up through ``T`` puts it
on the baseline grid, and the target registration error at a landmark pair (p_base,
p_follow) is ``|T(p_base) − p_follow|``.

Modes
-----
``rigid``         6-parameter Euler transform.
``affine``        rigid first, then 12-parameter affine initialised from it (default).
``tumour_rigid``  rigid on the whole image, then rigid again with the metric restricted to a
                  shell around the tumour (12–40 mm from the baseline lesion by default, full
                  resolution): the tumour region is aligned rigidly by its surroundings, so
                  shrinkage or an ablation zone is measured, not registered away.

Whole-image stages are multi-resolution (shrink 4-2-1, smoothing 2-1-0 voxels), gradient descent
with physical-shift parameter scaling. Metric: Mattes mutual information (any modality
pair, default) or mean squares (same modality and contrast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from latplan.errors import InvalidInputError, PlanningError
from latplan.followup._io import volume_to_sitk
from latplan.imaging.volume import Volume

__all__ = [
    "RegistrationResult",
    "dice",
    "load_transform",
    "register",
    "resample_labels_to_baseline",
    "save_transform",
    "transform_points",
]

Mode = Literal["rigid", "affine", "tumour_rigid"]
Metric = Literal["mattes_mi", "mean_squares"]


@dataclass
class RegistrationResult:
    """A registration and its quality.

    ``matrix`` is the 4×4 homogeneous matrix of ``transform`` (baseline LPS mm → follow-up LPS mm).
    """

    transform: sitk.Transform = field(repr=False)
    matrix: np.ndarray
    mode: str
    metric: str
    final_metric: float
    iterations: list[int]
    tre_mm: dict[str, float] = field(default_factory=dict)
    liver_dice: float | None = None

    @property
    def mean_tre_mm(self) -> float | None:
        return float(np.mean(list(self.tre_mm.values()))) if self.tre_mm else None

    @property
    def max_tre_mm(self) -> float | None:
        return float(np.max(list(self.tre_mm.values()))) if self.tre_mm else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "metric": self.metric,
            "final_metric": float(self.final_metric),
            "iterations": [int(i) for i in self.iterations],
            "matrix_baseline_to_followup_lps": self.matrix.tolist(),
            "tre_mm": {k: round(v, 3) for k, v in self.tre_mm.items()},
            "mean_tre_mm": None if self.mean_tre_mm is None else round(self.mean_tre_mm, 3),
            "max_tre_mm": None if self.max_tre_mm is None else round(self.max_tre_mm, 3),
            "liver_dice": None if self.liver_dice is None else round(self.liver_dice, 4),
        }


def _matrix_of(tx: sitk.Transform) -> np.ndarray:
    """4×4 homogeneous matrix of a linear transform (or composite of them), probed at 4 points."""
    return _matrix_of_single(tx)


def _matrix_of_single(tx: sitk.Transform) -> np.ndarray:
    # probe the transform at 4 points: exact for any affine map
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    out = np.array([tx.TransformPoint(tuple(float(c) for c in p)) for p in pts])
    m = np.eye(4)
    m[:3, 3] = out[0]
    m[:3, :3] = (out[1:] - out[0]).T
    return m


def _as_affine(tx: sitk.Transform) -> sitk.AffineTransform:
    m = _matrix_of(tx)
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([float(v) for v in m[:3, :3].flatten()])
    aff.SetTranslation([float(v) for v in m[:3, 3]])
    return aff


def transform_points(result: RegistrationResult | np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Map baseline LPS points (n, 3) to follow-up LPS points with the registration."""
    m = result.matrix if isinstance(result, RegistrationResult) else np.asarray(result, float)
    p = np.atleast_2d(np.asarray(points_mm, float))
    return p @ m[:3, :3].T + m[:3, 3]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice similarity 2|A∩B| / (|A|+|B|) of two boolean arrays (1.0 when both empty)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * float(np.count_nonzero(a & b)) / s


def _run_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    initial: sitk.Transform,
    metric: Metric,
    fixed_mask: sitk.Image | None,
    iterations: int,
    seed: int,
    shrink: tuple[int, ...] = (4, 2, 1),
) -> tuple[sitk.Transform, float, int]:
    reg = sitk.ImageRegistrationMethod()
    if metric == "mattes_mi":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    elif metric == "mean_squares":
        reg.SetMetricAsMeanSquares()
    else:
        raise InvalidInputError(f"unknown registration metric {metric!r}; use 'mattes_mi' or 'mean_squares'.")
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.25, seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel([f / 2.0 if f > 1 else 0.0 for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        raise PlanningError(
            "image registration failed: " + str(exc).strip().splitlines()[-1]
            + ". Check that both images show the same region, or give a fixed mask / mean_squares metric."
        ) from None
    return out, float(reg.GetMetricValue()), int(reg.GetOptimizerIteration())


def register(
    baseline: Volume,
    followup: Volume,
    *,
    mode: Mode = "affine",
    metric: Metric = "mattes_mi",
    tumour_mask: Volume | None = None,
    tumour_mask_margin_mm: float = 40.0,
    tumour_exclude_mm: float = 12.0,
    landmarks_baseline_mm: dict[str, np.ndarray] | None = None,
    landmarks_followup_mm: dict[str, np.ndarray] | None = None,
    liver_baseline: Volume | None = None,
    liver_followup: Volume | None = None,
    iterations: int = 100,
    seed: int = 20170101,
) -> RegistrationResult:
    """Register ``followup`` (moving) to ``baseline`` (fixed) and report quality.

    Parameters
    ----------
    mode:
        ``rigid``, ``affine`` (rigid then affine) or ``tumour_rigid`` (rigid, then rigid again
        with the metric in the shell ``tumour_exclude_mm`` < distance ≤ ``tumour_mask_margin_mm``
        (mm) around ``tumour_mask``: the surrounding liver, not the tumour/zone whose content
        changes by treatment, drives the local alignment).
    landmarks_*:
        Paired landmarks {name: (x, y, z) LPS mm}; names in both give the TRE (mm).
    liver_*:
        Liver masks on each image's own grid; the Dice after registration is reported.
    seed:
        Seed of the metric sampling: the result is deterministic.
    """
    fixed = sitk.Cast(volume_to_sitk(baseline), sitk.sitkFloat32)
    moving = sitk.Cast(volume_to_sitk(followup), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    fixed_mask = None
    if mode == "tumour_rigid":
        if tumour_mask is None:
            raise InvalidInputError(
                "mode 'tumour_rigid' needs the baseline tumour mask (tumour_mask=...) to restrict the metric."
            )
        tumour_mask.require_same_geometry(baseline, "tumour mask and baseline image")
        dist = ndimage.distance_transform_edt(~(tumour_mask.array != 0), sampling=baseline.spacing_kji_mm)
        region = (dist <= tumour_mask_margin_mm) & (dist > tumour_exclude_mm)
        fixed_mask = volume_to_sitk(baseline.with_array(region.astype(np.uint8)))
    elif mode not in ("rigid", "affine"):
        raise InvalidInputError(f"unknown registration mode {mode!r}; use 'rigid', 'affine' or 'tumour_rigid'.")

    rigid, value, it1 = _run_stage(fixed, moving, init, metric, None, iterations, seed)
    iters = [it1]
    final: sitk.Transform = rigid
    if fixed_mask is not None:
        # refine the whole-image rigid result inside the tumour region only (full resolution:
        # a small mask holds too few samples on coarse levels for a stable metric)
        final, value, it2 = _run_stage(fixed, moving, rigid, metric, fixed_mask, iterations, seed, shrink=(1,))
        iters.append(it2)
    if mode == "affine":
        aff0 = _as_affine(rigid)
        final, value, it2 = _run_stage(fixed, moving, aff0, metric, None, iterations, seed)
        iters.append(it2)
    matrix = _matrix_of(final)
    result = RegistrationResult(
        transform=_as_affine(final), matrix=matrix, mode=mode, metric=metric, final_metric=value, iterations=iters
    )
    if landmarks_baseline_mm and landmarks_followup_mm:
        for name in sorted(set(landmarks_baseline_mm) & set(landmarks_followup_mm)):
            p = transform_points(matrix, np.asarray(landmarks_baseline_mm[name], float))[0]
            result.tre_mm[name] = float(np.linalg.norm(p - np.asarray(landmarks_followup_mm[name], float)))
    if liver_baseline is not None and liver_followup is not None:
        warped = resample_labels_to_baseline(liver_followup, baseline, matrix)
        result.liver_dice = dice(liver_baseline.array != 0, warped.array != 0)
    return result


def resample_labels_to_baseline(followup: Volume, baseline: Volume, matrix: np.ndarray | None) -> Volume:
    """Nearest-neighbour resampling of a follow-up label map onto the baseline grid.

    ``matrix``: baseline→follow-up 4×4 (from :func:`register`); None = identity (same space).
    """
    if matrix is None and followup.same_geometry(baseline):
        return baseline.with_array(followup.array)
    tx = sitk.AffineTransform(3)
    if matrix is not None:
        m = np.asarray(matrix, float)
        tx.SetMatrix([float(v) for v in m[:3, :3].flatten()])
        tx.SetTranslation([float(v) for v in m[:3, 3]])
    src = volume_to_sitk(followup, np.int32 if followup.array.dtype == bool else None)
    ref = volume_to_sitk(baseline.with_array(np.zeros(baseline.shape, np.uint8)))
    out = sitk.Resample(src, ref, tx, sitk.sitkNearestNeighbor, 0, src.GetPixelID())
    arr = sitk.GetArrayFromImage(out)
    if followup.array.dtype == bool:
        arr = arr.astype(bool)
    return baseline.with_array(arr)


def save_transform(result: RegistrationResult, folder: str | Path, stem: str = "registration") -> dict[str, Path]:
    """Write ``<stem>.tfm`` (ITK) and ``<stem>.json`` (4×4 matrix + quality) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tfm = folder / f"{stem}.tfm"
    js = folder / f"{stem}.json"
    sitk.WriteTransform(result.transform, str(tfm))
    js.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return {"tfm": tfm, "json": js}


def load_transform(path: str | Path) -> np.ndarray:
    """4×4 baseline→follow-up matrix from a ``.tfm`` or the ``.json`` written by :func:`save_transform`."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return np.asarray(data["matrix_baseline_to_followup_lps"], float)
    return _matrix_of(sitk.ReadTransform(str(path)))
