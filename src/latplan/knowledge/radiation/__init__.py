"""Radiation knowledge: TG-101 constraints, IBT prescriptions/limits, SBRT local control, Y-90 limits.

Why data files: clinical numbers (14 Gy D1cc, TG-101 tables, 20 Gy D100 for colorectal
metastases) are evidence with citations, not physics; the physics engines take them as
parameters and the modality layer reads them here. Every entry carries a citation key
(``latplan/knowledge/citations.yaml``) and its text.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from latplan.errors import InvalidInputError, KnowledgeError

__all__ = [
    "LocalControlEstimate",
    "ibt_biliary_limits",
    "ibt_config",
    "ibt_local_control",
    "ibt_oar_limits",
    "ibt_parameters",
    "ibt_prescription_gy",
    "load",
    "parameters_for",
    "sbrt_config",
    "sbrt_conformity_limits",
    "sbrt_dose_response",
    "sbrt_extra_constraints",
    "sbrt_local_control",
    "sbrt_parameters",
    "tare_parameters",
    "tg101_constraints",
    "y90_config",
]

_FILES = ("tg101", "ibt", "sbrt", "y90")


@cache
def load(name: str) -> dict[str, Any]:
    """Parsed YAML of one radiation knowledge file (tg101, ibt, sbrt, y90)."""
    if name not in _FILES:
        raise KnowledgeError(f"unknown radiation knowledge file {name!r}; known: {', '.join(_FILES)}.")
    text = (resources.files("latplan.knowledge.radiation") / f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise KnowledgeError(f"radiation knowledge file {name}.yaml is not a mapping.")
    return data


def tg101_constraints(fractions: int) -> list[dict[str, Any]]:
    """TG-101 constraints for ``fractions`` (1, 3 or 5) as flat dicts.

    Keys: organ, structures, kind (serial/parallel), volume_ml or spared_ml, threshold_gy,
    max_point_gy (or None), citation, verify.
    """
    data = load("tg101")
    out = []
    for c in data["constraints"]:
        per = c["by_fractions"].get(fractions)
        if per is None:
            raise InvalidInputError(
                f"TG-101 constraints are tabulated for 1, 3 and 5 fractions; got {fractions}. "
                "Choose one of these schedules (or provide constraints explicitly)."
            )
        out.append({
            "organ": c["organ"],
            "structures": list(c["structures"]),
            "kind": c["kind"],
            "volume_ml": c.get("volume_ml"),
            "spared_ml": c.get("spared_ml"),
            "threshold_gy": float(per["threshold_gy"]),
            "max_point_gy": float(per["max_point_gy"]) if per.get("max_point_gy") is not None else None,
            "citation": data["citation"],
            "verify": bool(c.get("verify", False)),
        })
    return out


def ibt_config() -> dict[str, Any]:
    """The whole IBT knowledge file (prescriptions, organ limits, local control, dwell settings)."""
    return load("ibt")


def ibt_prescription_gy(primary: str | None) -> tuple[float, str]:
    """(D100 prescription in Gy, citation key) for a primary tumour (colorectal → 20 Gy, else 15 Gy)."""
    primary_s = (getattr(primary, "value", primary) or "other").lower()
    rx = {p["primary"]: p for p in ibt_config()["prescriptions"]}
    entry = rx.get(primary_s, rx["other"])
    return float(entry["d100_gy"]), str(entry["citation"])


def ibt_oar_limits() -> dict[str, dict[str, Any]]:
    """{organ: {structures, metric, limit_gy, volume_ml, hard, citation}} for IBT (D1cc ≤ 14 Gy...)."""
    return _limits(ibt_config()["oar_limits"])


def ibt_biliary_limits() -> dict[str, dict[str, Any]]:
    """Central bile duct / hilum planning limit for IBT (soft; marked verify in the data)."""
    return _limits(ibt_config().get("central_bile_duct", []))


def _limits(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for o in rows:
        metric = str(o["metric"])
        if not metric.startswith("d") or not metric.endswith("cc"):
            raise KnowledgeError(f"IBT organ limit {o['id']}: metric {metric!r} must be D<v>cc (e.g. d1cc).")
        vol = float(metric[1:-2].replace("_", "."))
        out[o["organ"]] = {"structures": list(o["structures"]), "metric": metric, "limit_gy": float(o["limit_gy"]),
                           "volume_ml": vol, "hard": bool(o.get("hard", True)), "citation": o["citation"],
                           "id": o["id"]}
    return out


def ibt_local_control() -> list[dict[str, Any]]:
    """IBT local-control figures from IBT series (endpoint, time point, population, evidence level)."""
    return list(ibt_config()["local_control"])


def sbrt_config() -> dict[str, Any]:
    return load("sbrt")


def sbrt_conformity_limits(ptv_volume_ml: float) -> tuple[float, float]:
    """(R50%, D2cm %) limits of the RTOG 0915 conformity table for a PTV volume ('no deviation' column;
    interpolated in log volume, clamped at the table ends)."""
    t = sbrt_config()["conformity_table"]
    lv = np.log(np.clip(ptv_volume_ml, t["ptv_ml"][0], t["ptv_ml"][-1]))
    return (float(np.interp(lv, np.log(t["ptv_ml"]), t["r50"])),
            float(np.interp(lv, np.log(t["ptv_ml"]), t["d2cm_percent"])))


def sbrt_extra_constraints(fractions: int) -> list[dict[str, Any]]:
    """Chest-wall/rib and central bile-duct constraints (rows like :func:`tg101_constraints`) for ``fractions``.

    Rows published as BED10 (Osmundson 2015) carry ``bed10_gy`` and ``threshold_gy`` None: the planner
    converts them to the total physical dose of its fractionation.
    """
    out = []
    for c in sbrt_config()["extra_constraints"]:
        if "bed10_gy" in c:
            thr, mp = None, None
        else:
            per = c["by_fractions"].get(fractions)
            if per is None:
                continue
            thr = float(per["threshold_gy"])
            mp = float(per["max_point_gy"]) if per.get("max_point_gy") is not None else None
        out.append({"organ": c["organ"], "structures": list(c["structures"]), "kind": c["kind"],
                    "volume_ml": c.get("volume_ml"), "spared_ml": None, "threshold_gy": thr, "max_point_gy": mp,
                    "bed10_gy": c.get("bed10_gy"), "citation": c["citation"], "verify": bool(c.get("verify", False))})
    return out


def y90_config() -> dict[str, Any]:
    return load("y90")


class LocalControlEstimate(dict):
    """A dict with keys: local_control_percent, months, bed10_gy, extrapolated, source, endpoint, uncertainty."""


def _logistic_params(anchors: list[dict[str, Any]]) -> tuple[float, float]:
    (b1, p1), (b2, p2) = ((float(a["bed10_gy"]), float(a["lc_percent_12m"]) / 100.0) for a in anchors[:2])
    l1, l2 = math.log(p1 / (1 - p1)), math.log(p2 / (1 - p2))
    slope = (l2 - l1) / (math.log(b2) - math.log(b1))  # = 4·γ50
    bed50 = b1 * math.exp(-l1 / slope)
    return bed50, slope


def sbrt_local_control(bed10_gy: float, months: float = 12.0, primary: str | None = "colorectal") -> LocalControlEstimate:
    """Estimated SBRT local control (%) at ``months`` for a lesion BED with α/β = 10 Gy.

    Model (knowledge/radiation/sbrt.yaml): 12-month control is a logistic TCP in BED10
    through two published anchors (Chang 2011: BED10 ≥ 79 Gy → 86 %; Klement 2017: 90 %
    at 3 × 17 Gy colorectal / 3 × 14.5 Gy all histologies); the time course follows Chang
    2011's 86/80/71 % at 12/18/24 months (cumulative hazard scaled). The BED must use
    α/β = 10 whatever α/β the user displays. Never feed IBT single-fraction doses into it.
    """
    if not (np.isfinite(bed10_gy) and bed10_gy > 0):
        raise InvalidInputError(f"BED10 must be > 0 Gy; got {bed10_gy}.")
    if months < 0:
        raise InvalidInputError(f"months must be ≥ 0; got {months}.")
    cfg = sbrt_config()["local_control"]
    primary_s = (getattr(primary, "value", primary) or "other").lower()
    population = cfg.get("anchor_populations", {}).get(primary_s)
    if population is None:
        raise InvalidInputError(
            f"no published 12/24-month SBRT local-control anchor for primary {primary_s!r} in knowledge/radiation/"
            "sbrt.yaml (the anchors are colorectal and metastasis series); use sbrt_dose_response for primary "
            "liver tumours.")
    anchors = cfg["anchors"][population]
    bed50, slope = _logistic_params(anchors)
    p12 = 1.0 / (1.0 + (bed50 / bed10_gy) ** slope)
    tc = cfg["time_course"]
    t = np.asarray(tc["months"], float)
    h = -np.log(np.asarray(tc["lc_percent_reference"], float) / 100.0)
    h12 = float(np.interp(12.0, t, h))
    if months <= t[-1]:
        ht = float(np.interp(months, t, h))
    else:  # linear extrapolation of the cumulative hazard beyond the last time point
        ht = float(h[-1] + (h[-1] - h[-2]) / (t[-1] - t[-2]) * (months - t[-1]))
    lc = p12 ** (ht / h12) if h12 > 0 else p12
    lo, hi = cfg["valid_bed10_gy"]
    return LocalControlEstimate(
        local_control_percent=100.0 * lc,
        months=months,
        bed10_gy=float(bed10_gy),
        extrapolated=bool(bed10_gy < lo or bed10_gy > hi or months > t[-1]),
        endpoint=cfg["endpoint"],
        source=cfg["citation_text"],
        citation=cfg["citation"],
        uncertainty=cfg["uncertainty"],
        model_id=cfg["id"],
        population=population,
    )


def sbrt_dose_response(bed10_gy: float, primary: str | None) -> LocalControlEstimate | None:
    """Published logistic dose–response (6-month local control) for the lesion's population, or None.

    knowledge/radiation/sbrt.yaml ``local_control.dose_response``: EQD2 (α/β 10 Gy) giving 50 % and 90 %
    control per population (HCC; colorectal metastases), log-logistic TCP through both points. None for a
    primary without a published curve (never another population's curve).
    """
    if not (np.isfinite(bed10_gy) and bed10_gy > 0):
        raise InvalidInputError(f"BED10 must be > 0 Gy; got {bed10_gy}.")
    cfg = sbrt_config()["local_control"]["dose_response"]
    primary_s = (getattr(primary, "value", primary) or "").lower()
    pop = cfg["primary_map"].get(primary_s)
    if pop is None:
        return None
    par = cfg["populations"][pop]
    d50, d90 = float(par["eqd2_50_gy"]), float(par["eqd2_90_gy"])
    k = math.log(9.0) / math.log(d90 / d50)
    eqd2 = float(bed10_gy) / (1.0 + 2.0 / float(cfg["alpha_beta_gy"]))
    lo, hi = cfg["valid_eqd2_gy"]
    return LocalControlEstimate(
        local_control_percent=100.0 / (1.0 + (d50 / eqd2) ** k),
        months=float(cfg["endpoint_months"]),
        bed10_gy=float(bed10_gy),
        eqd2_gy=eqd2,
        extrapolated=bool(eqd2 < lo or eqd2 > hi),
        endpoint=cfg["endpoint"],
        source=cfg["citation_text"],
        citation=cfg["citation"],
        uncertainty=cfg["uncertainty"],
        population=par["population"] + ("" if pop == primary_s else f" (used for {primary_s}: nearest population)"),
        model_id=f"sbrt-dose-response-{pop}",
    )


# --- planner parameters for the modality layer ([D] reads these and passes them by keyword) ------
def ibt_parameters() -> dict[str, Any]:
    """Keyword parameters of :func:`latplan.planning.ibt.plan_ibt` from the knowledge data.

    The prescription is not included: it depends on the primary (colorectal 20 Gy, otherwise
    15 Gy) and ``plan_ibt`` derives it from the case's patient when ``prescription_gy`` is None
    (or call :func:`ibt_prescription_gy`).
    """
    cfg = ibt_config()
    return {
        "ctv_margin_mm": float(cfg["ctv_margin_mm"]["value"]),
        "margin_mm": float(cfg["ctv_margin_mm"]["value"]),  # old name of ctv_margin_mm (kept for callers)
        "oar_limits": ibt_oar_limits(),
        "dwell_step_mm": float(cfg["dwell"]["step_mm"]["value"]),
        "dwell_extension_mm": float(cfg["dwell"]["extension_mm"]["value"]),
        "max_modulation": float(cfg["dwell"]["max_modulation"]["value"]),
        "sk_u": float(cfg["dwell"]["source_strength_u"]["value"]),
    }


def sbrt_parameters() -> dict[str, Any]:
    """Keyword parameters of :func:`latplan.planning.sbrt.plan_sbrt` (first schedule: 3 × 15 Gy).

    ``constraints`` are left out on purpose: ``plan_sbrt`` reads the TG-101 rows for the
    number of fractions it is given.
    """
    cfg = sbrt_config()
    first = cfg["schedules"][0]
    return {
        "fractions": int(first["fractions"]),
        "dose_per_fraction_gy": float(first["dose_per_fraction_gy"]),
        "ptv_margin_mm": float(cfg["ptv_margin_mm"]["value"]),
        # the fixed λ is used only with plan_sbrt(calibrate_falloff=False); by default λ is calibrated per PTV
        "falloff_lambda_mm": float(cfg["dose_falloff"]["lambda_mm"]),
        "alpha_beta_gy": float(cfg["alpha_beta_gy"]["default"]),
    }


def tare_parameters() -> dict[str, Any]:
    """Keyword parameters of :func:`latplan.planning.tare.plan_tare` (limits; LSF/TN come from the patient)."""
    cfg = y90_config()
    return {
        "lung_limit_gy": float(cfg["lung"]["limit_per_treatment_gy"]),
        "lung_cumulative_limit_gy": float(cfg["lung"]["limit_cumulative_gy"]),
        "normal_liver_limit_gy": float(cfg["targets"]["partition_normal_liver_limit_gy"]["value"]),
    }


def parameters_for(modality: str) -> dict[str, Any]:
    """Planner parameters for "ibt", "sbrt" or "tare" (empty dict for other modalities)."""
    fn = {"ibt": ibt_parameters, "sbrt": sbrt_parameters, "tare": tare_parameters}.get(str(modality).lower())
    return fn() if fn else {}
