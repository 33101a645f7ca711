"""Turn a board proposal into the plain view-model the report templates render.

The report computes no clinical result: every number comes from the proposal
(``measurements``, ``plan_json``, ``plans``). This module only formats: it names metrics
plainly (D90, V100, minimal margin), attaches units, and embeds the figures as base64
``data:`` URIs so the HTML is self-contained.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.metadata
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml

from latplan.report import figures as F

__all__ = ["MetricRow", "build_context", "format_value", "metric_rows", "plain_language"]

_DATA_DIR = Path(__file__).with_name("data")

#: plan.json metric key → (plain name, unit, meaning). Units are in the key names (docs/architecture.md conventions).
METRIC_NAMES: dict[str, tuple[str, str, str]] = {
    "d100_gy": ("D100", "Gy", "minimum dose received by the whole target"),
    "d98_gy": ("D98", "Gy", "dose received by 98 % of the target"),
    "d95_gy": ("D95", "Gy", "dose received by 95 % of the target"),
    "d90_gy": ("D90", "Gy", "dose received by 90 % of the target"),
    "v100_percent": ("V100", "%", "share of the target receiving ≥ 100 % of the prescription"),
    "v150_percent": ("V150", "%", "share of the target receiving ≥ 150 % of the prescription"),
    "v200_percent": ("V200", "%", "share of the target receiving ≥ 200 % of the prescription"),
    "liver_v5gy_percent": ("liver V5Gy", "%", "share of the liver receiving ≥ 5 Gy"),
    "min_margin_mm": ("minimal margin", "mm", "smallest distance from the tumour surface to the zone edge"),
    "coverage_percent": ("coverage", "%", "share of the tumour volume inside the predicted zone"),
    "zone_volume_ml": ("zone volume", "ml", "volume of the predicted treated zone"),
    "feasible": ("feasible", "", "all organ constraints met"),
    "limiting_organ": ("limiting organ", "", "the organ whose constraint limits the dose"),
    "bed_gy": ("BED10", "Gy", "biologically effective dose, α/β = 10 Gy"),
    "bed10_gy": ("BED10", "Gy", "biologically effective dose, α/β = 10 Gy"),
    "eqd2_gy": ("EQD2", "Gy", "equivalent dose in 2 Gy fractions"),
    "activity_gbq": ("Y-90 activity", "GBq", "activity to administer"),
    "prescription_gy": ("prescription", "Gy", "prescribed dose"),
    "treatment_time_s": ("treatment time", "s", "total irradiation or ablation time"),
}
#: organ-dose dictionaries: key → (name pattern, meaning)
ORGAN_DOSE_KEYS: dict[str, tuple[str, str]] = {
    "oar_d1cc_gy": ("D1cc {organ}", "highest dose received by 1 cm³ of the organ"),
    "oar_d2cc_gy": ("D2cc {organ}", "highest dose received by 2 cm³ of the organ"),
    "oar_dmax_gy": ("Dmax {organ}", "maximum dose to the organ"),
}
_SKIP_KEYS = frozenset({"applicators", "caveats", "parameters", "engine", "runtime_s", "margin_histogram_percent",
                        "constraints", "why", "dvh", "trajectory_verified"})
#: [L] a trajectory whose abdominal-wall crossing lies outside the image
TRAJECTORY_UNVERIFIED = "cannot be verified (the image does not show the abdominal wall along this path)"

_UNIT_SUFFIXES = (("_gy", "Gy"), ("_percent", "%"), ("_mm", "mm"), ("_ml", "ml"), ("_s", "s"), ("_gbq", "GBq"),
                  ("_c", "°C"), ("_v_per_cm", "V/cm"), ("_w", "W"))


@dataclass
class MetricRow:
    name: str
    value: str
    unit: str
    meaning: str


@dataclass
class Image:
    uri: str
    caption: str
    key: str = ""


@dataclass
class SimulatedOption:
    modality: str
    modality_name: str
    metrics: list[MetricRow]
    margin_rows: list[MetricRow]
    images: list[Image]
    caveats: list[str]
    engine: str
    engine_version: str
    verification: str
    parameters: list[tuple[str, str]]
    constraints: list[dict[str, str]] = field(default_factory=list)


@dataclass
class LesionSection:
    id: str
    title: str
    measurements: list[tuple[str, str]]
    views: Image | None
    options: list[dict[str, Any]]
    simulated: list[SimulatedOption] = field(default_factory=list)
    figure_errors: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    territory: Image | None = None
    territory_note: str | None = None


def png_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI: images travel inside the HTML, never fetched."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@cache
def plain_language() -> dict[str, Any]:
    """(Cached, treat as read-only.) Modality names and plain-language texts (reading age ≈ 12) from data/plain_language.yaml."""
    with open(_DATA_DIR / "plain_language.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def modality_name(code: str) -> str:
    names = plain_language()["modalities"]
    entry = names.get(str(code).lower())
    return entry.get("board_name", entry["name"]) if entry else str(code).upper()


# ------------------------------------------------------------------------------------------
# value formatting
# ------------------------------------------------------------------------------------------
def format_number(value: float, unit: str = "") -> str:
    """Numbers as clinicians read them: ≤ 3 significant decimals, no '19.100000001'."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    a = abs(value)
    if a >= 100 or float(value).is_integer():
        s = f"{value:.0f}"
    elif a >= 10:
        s = f"{value:.1f}"
    else:
        s = f"{value:.2f}".rstrip("0").rstrip(".") if a >= 0.01 or a == 0 else f"{value:.2g}"
    return s


def format_value(value: Any) -> str:
    """Any plan.json value as short readable text (None → 'unknown')."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, str):
        return value.replace("_", " ") if " " not in value and len(value) < 40 else value
    if isinstance(value, Mapping):
        return format_mapping(value)
    if isinstance(value, Sequence):
        return "; ".join(format_value(v) for v in value) if value else "none"
    return str(value)


def format_mapping(value: Mapping[str, Any]) -> str:
    """A dict as text; outcome-figure dicts get 'X % endpoint at T (population; level; source)'."""
    outcome_keys = ("value_percent", "percent", "rate_percent")
    if any(k in value for k in outcome_keys) or "note" in value:
        val = next((value[k] for k in outcome_keys if value.get(k) is not None), value.get("value"))
        if val is None:
            return str(value.get("note") or "no comparable figure")
        parts = [f"{format_value(val)} %" if not isinstance(val, str) else val]
        if value.get("endpoint"):
            parts.append(str(value["endpoint"]).replace("_", " "))
        tp = value.get("time_point") or value.get("timepoint") or value.get("time")
        if tp is None and value.get("time_point_months") is not None:
            tp = f"{format_number(value['time_point_months'])} months"
        if tp:
            parts.append(f"at {tp}")
        extra = [str(value[k]) for k in ("population",) if value.get(k)]
        if value.get("evidence_level"):
            extra.append(str(value["evidence_level"]))
        src = value.get("source") or value.get("citation")
        if src:
            extra.append(f"source: {format_value(src)}")
        if value.get("comparable") is False and value.get("note"):
            extra.append(str(value["note"]))
        return " ".join(parts) + (f" ({'; '.join(extra)})" if extra else "")
    if "text" in value and len(value) <= 3:
        return str(value["text"])
    if "route" in value or "level" in value:
        bits = [str(value["route"])] if value.get("route") else []
        if value.get("level") is not None:
            bits.append(f"level {format_value(value['level'])} of 5")
        return ", ".join(bits)
    return "; ".join(f"{_key_name(k)}: {format_value(v)}" for k, v in value.items() if v is not None)


def _key_name(key: str) -> str:
    for suffix, unit in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            return f"{key[: -len(suffix)].replace('_', ' ')} ({unit})"
    return key.replace("_", " ")


def metric_rows(metrics: Mapping[str, Any], modality: str = "") -> list[MetricRow]:
    """Metrics as named rows (D90, V100, D1cc stomach, minimal margin...), known keys first.

    Two keys with the same plain name and value (``bed_gy`` and ``bed10_gy``) give one row.
    """
    rows: list[MetricRow] = []
    seen: set[tuple[str, str]] = set()
    for key, (name, unit, meaning) in METRIC_NAMES.items():
        if key in metrics and metrics[key] is not None and not isinstance(metrics[key], (Mapping, list)):
            v = metrics[key]
            text = format_value(v) if not isinstance(v, str) else v.replace("_", " ")
            if key == "feasible" and modality.lower() == "sbrt":
                unseen = metrics.get("unsegmented_organs") or []
                name, meaning = "SBRT feasible", (
                    "the constraints of the segmented organs met by the screening estimate; not checked (not "
                    "segmented): " + ", ".join(str(o) for o in unseen) if unseen else
                    "all organ constraints met by the screening estimate")
            if (name, text) in seen:
                continue
            seen.add((name, text))
            rows.append(MetricRow(name, text, unit, meaning))
    oar_raw = metrics.get("oar")
    oar: Mapping[str, Any] = oar_raw if isinstance(oar_raw, Mapping) else {}
    for key, (pattern, meaning) in ORGAN_DOSE_KEYS.items():
        organs = metrics.get(key)
        if isinstance(organs, Mapping):
            for organ, gy in organs.items():
                m = meaning
                limit = oar.get(organ, {}).get("limit_gy") if isinstance(oar.get(organ), Mapping) else None
                if key == "oar_d1cc_gy" and limit is not None:
                    m = f"{meaning}; constraint {format_value(limit)} Gy"
                rows.append(MetricRow(pattern.format(organ=str(organ).replace("_", " ")), format_value(gy), "Gy", m))
    if "oar_d2cc_gy" not in metrics:
        for organ, d in oar.items():
            if isinstance(d, Mapping) and d.get("d2cc_gy") is not None:
                rows.append(MetricRow(f"D2cc {str(organ).replace('_', ' ')}", format_value(d["d2cc_gy"]), "Gy",
                                      ORGAN_DOSE_KEYS["oar_d2cc_gy"][1]))
    for key, v in metrics.items():
        if key in METRIC_NAMES or key in ORGAN_DOSE_KEYS or key in _SKIP_KEYS or key in ("oar", "organs"):
            continue
        if isinstance(v, Mapping) or (isinstance(v, list) and any(isinstance(x, (Mapping, list)) for x in v)):
            continue  # nested engine details: in plan.json, not in the table
        unit = next((u for s, u in _UNIT_SUFFIXES if key.endswith(s)), "")
        name = key
        for s, _ in _UNIT_SUFFIXES:
            if key.endswith(s):
                name = key[: -len(s)]
                break
        text = format_value(v)
        if key == "trajectory_safe" and metrics.get("trajectory_verified") is False:
            text = TRAJECTORY_UNVERIFIED  # [L] never "safe" (nor "unknown") when the wall is not shown
        rows.append(MetricRow(name.replace("_", " "), text, unit, ""))
    return rows


def constraint_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """SBRT screen organ constraints (``organs`` or ``constraints``) as table rows."""
    organs = metrics.get("organs") or metrics.get("constraints")
    if isinstance(organs, list):
        organs = {str(o.get("organ", i)): o for i, o in enumerate(organs) if isinstance(o, Mapping)}
    if not isinstance(organs, Mapping):
        return []
    rows = []
    for organ, d in organs.items():
        if not isinstance(d, Mapping):
            continue
        if d.get("spared_ml_required") is not None:
            estimate = f"{format_value(d.get('spared_ml_estimate'))} ml spared"
            limit = (f"≥ {format_value(d['spared_ml_required'])} ml below {format_value(d.get('threshold_gy'))} Gy")
        else:
            est = next((d[k] for k in ("dose_estimate_gy", "estimate_gy", "dose_gy") if d.get(k) is not None), None)
            lim = next((d[k] for k in ("threshold_gy", "limit_gy") if d.get(k) is not None), None)
            vol = d.get("volume_ml")
            estimate = f"{format_value(est)} Gy" + (f" to {format_value(vol)} ml" if vol is not None else "")
            limit = f"{format_value(lim)} Gy" + (f" to {format_value(vol)} ml" if vol is not None else "")
            if d.get("max_point_gy") is not None:
                limit += f"; point max {format_value(d['max_point_gy'])} Gy"
                estimate += f"; point {format_value(d.get('max_point_estimate_gy'))} Gy"
        ok = d.get("ok")
        rows.append({"organ": str(organ).replace("_", " "), "kind": str(d.get("kind", "")), "estimate": estimate,
                     "limit": limit, "ok": "met" if ok else ("NOT met" if ok is False else "unknown")})
    return rows


def margin_rows(histogram: Mapping[str, float] | None) -> list[MetricRow]:
    if not histogram:
        return []
    labels = (("<0", "tumour surface with margin < 0 mm (not covered)"), ("0-5", "tumour surface with margin 0–5 mm"),
              (">=5", "tumour surface with margin ≥ 5 mm"))
    return [MetricRow(lbl, format_number(F._hist_get(histogram, k)), "%", "") for k, lbl in labels]


# ------------------------------------------------------------------------------------------
# the context
# ------------------------------------------------------------------------------------------
_ELIG_ORDER = {"indicated": 0, "eligible": 1, "relative_contraindication": 2, "contraindicated": 3}


class References:
    """Numbered citations of one section, so reasons show [n] and the full source is listed once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def cite(self, citation: Any) -> int | None:
        if not citation:
            return None
        text = format_value(citation)
        if text not in self.items:
            self.items.append(text)
        return self.items.index(text) + 1


def _sorted_options(options: Sequence[Mapping[str, Any]], refs: References | None = None) -> list[dict[str, Any]]:
    """plan.json options, best rank first, as flat view dicts the templates can rely on."""
    refs = refs if refs is not None else References()

    def key(o: Mapping[str, Any]) -> tuple:
        rank = o.get("rank")
        return (rank is None, rank if isinstance(rank, (int, float)) else 0,
                _ELIG_ORDER.get(str(o.get("eligibility")), 9), str(o.get("modality")))

    out = []
    for o in sorted(options, key=key):
        code = str(o.get("modality", ""))
        lc = o.get("local_control")
        ps = o.get("profile_source")
        profile: Mapping[str, Any] = ps if isinstance(ps, Mapping) else {}
        evidence = o.get("evidence_level") or (lc.get("evidence_level") if isinstance(lc, Mapping) else None) \
            or profile.get("evidence_level")
        if o.get("stay") is not None:
            stay = format_value(o.get("stay"))
        elif o.get("hospital_stay_days") is not None:
            stay = f"{format_value(o['hospital_stay_days'])} day(s)"
            if o.get("recovery_days") is not None:
                stay += f"; recovery {format_value(o['recovery_days'])} day(s)"
        else:
            stay = "unknown"
        sim = o.get("simulation")
        if isinstance(sim, Mapping) and set(sim) - {"why"}:
            rows = [r for r in metric_rows(sim, code) if r.name in _GRID_METRICS][:5]
            sim_text = "; ".join(f"{r.name} {r.value}{(' ' + r.unit) if r.unit and r.unit != '%' else r.unit}"
                                 for r in rows) or "simulated (see below)"
        else:
            why = o.get("simulation_why") or (sim.get("why") if isinstance(sim, Mapping) else None)
            sim_text = f"not simulated: {why}" if why else "not simulated"
        prior = o.get("prior_vs_simulation")
        disagreement = None
        if isinstance(prior, Mapping) and prior.get("agree") is False:
            disagreement = (f"size rule ({str(prior.get('size_prior', '')).replace('_', ' ')}) and simulation "
                            f"({prior.get('simulation_verdict', '')}) disagree: {prior.get('simulation_text', '')}")
        reasons = []
        for r in o.get("reasons") or []:
            if isinstance(r, Mapping):
                reasons.append({"text": str(r.get("text", "")), "rule_id": r.get("rule_id"),
                                "level": r.get("evidence_level"), "ref": refs.cite(r.get("citation"))})
            else:
                reasons.append({"text": str(r), "rule_id": None, "level": None, "ref": None})
        cannot = []
        for c in o.get("cannot_assess") or []:
            if isinstance(c, Mapping):
                missing = ", ".join(str(m) for m in c.get("missing") or [])
                cannot.append({"text": str(c.get("text", "")).removeprefix("cannot assess: "), "rule_id": c.get("rule_id"),
                               "missing": missing, "ref": refs.cite(c.get("citation"))})
            else:
                cannot.append({"text": str(c), "rule_id": None, "missing": "", "ref": None})
        rk = o.get("ranking")
        ranking: Mapping[str, Any] = rk if isinstance(rk, Mapping) else {}
        lc_ref = refs.cite(lc.get("citation")) if isinstance(lc, Mapping) and lc.get("value_percent") is not None else None
        out.append({
            "modality": code,
            "modality_name": modality_name(code),
            "rank": o.get("rank"),
            "eligibility": str(o.get("eligibility", "unknown")),
            "eligibility_text": str(o.get("eligibility", "unknown")).replace("_", " "),
            "local_control": _local_control_short(lc),
            "local_control_ref": lc_ref,
            "local_control_value": lc,
            "invasiveness": format_value(o.get("invasiveness")),
            "stay": stay,
            "main_risks": format_value(o.get("main_risks")) if o.get("main_risks") else "not stated",
            "evidence_level": format_value(evidence) if evidence else "not stated",
            "simulation_text": sim_text,
            "disagreement": disagreement,
            "reasons": reasons,
            "cannot_assess": cannot,
            "needs_review": bool(o.get("needs_review")),
            "ranking_reason": ranking.get("reason"),
        })
    return out


#: arterial (regional) options whose picture is the treated territory
_REGIONAL = frozenset({"tace", "tare", "hai"})

#: metrics shown in the one-line simulation summary of the option grid
_GRID_METRICS = frozenset({"minimal margin", "coverage", "D100", "D90", "V100", "SBRT feasible", "feasible",
                           "limiting organ",
                           "BED10", "Y-90 activity"})


def _local_control_short(lc: Any) -> str:
    """Grid text of an outcome figure: value, endpoint, time point, level (source as [n])."""
    if isinstance(lc, Mapping):
        val = next((lc[k] for k in ("value_percent", "percent", "rate_percent") if lc.get(k) is not None), None)
        if val is None:
            return str(lc.get("note") or "no comparable figure")
        parts = [f"{format_value(val)} %"]
        if lc.get("endpoint"):
            parts.append(str(lc["endpoint"]).replace("_", " "))
        tp = lc.get("time_point") or (f"{format_number(lc['time_point_months'])} months"
                                      if lc.get("time_point_months") is not None else None)
        if tp:
            parts.append(f"at {tp}")
        text = " ".join(parts)
        if lc.get("population"):
            text += f" ({lc['population']})"
        if lc.get("comparable") is False:
            text += " — not comparable with the other options' figures"
        return text
    return format_value(lc)


def _measurement_pairs(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []

    def add(label: str, key: str, unit: str = "") -> None:
        if key in m:
            v = m[key]
            pairs.append((label, format_value(v) + (f" {unit}" if unit and v is not None else "")))

    add("volume", "volume_ml", "ml")
    add("largest diameter", "max_diameter_mm", "mm")
    add("axial diameter", "axial_diameter_mm", "mm")
    if "segments" in m:
        pairs.append(("Couinaud segment(s)", ", ".join(str(s).replace("liver_segment_", "") for s in m["segments"] or [])
                      or "unknown"))
    if "capsule_distance_mm" in m:
        pairs.append(("distance to liver capsule", capsule_text(m, " mm")))
    vessels = m.get("nearest_vessels") or []
    limited = fov_limited_names(m)
    if vessels:
        pairs.append(("nearest vessels", "; ".join(_vessel_text(v, limited) for v in vessels[:3])))
    dists = m.get("distances_mm")
    if isinstance(dists, Mapping) and dists:
        known = sorted(((str(k), float(v)) for k, v in dists.items()
                        if isinstance(v, (int, float)) and not str(k).startswith(("liver", "lesion"))),
                       key=lambda kv: kv[1])
        if known:
            pairs.append(("nearest structures", "; ".join(f"{k.replace('_', ' ')} {distance_text(v, k in limited, ' mm')}"
                                                          for k, v in known[:8])))
    if limited:
        pairs.append(("distances limited by the field of view",
                      ", ".join(n.replace("_", " ") for n in sorted(limited)) + ": " + FOV_DISTANCE_WHY))
    for key, label in (("sphericity", "sphericity"), ("equivalent_sphere_diameter_mm", "equivalent-sphere diameter")):
        if m.get(key) is not None:
            pairs.append((label, format_value(m[key]) + (" mm" if key.endswith("_mm") else "")))
    if m.get("not_segmented"):
        pairs.append(("not segmented (cannot be assessed)", ", ".join(str(s).replace("_", " ") for s in m["not_segmented"])))
    return pairs


#: [L] why a distance is shown as a lower bound ("≥ d")
FOV_DISTANCE_WHY = ("the structure reaches the edge of the image, so the true gap beyond the image may be smaller; "
                    "shown as ≥ the distance measured inside the image")


def fov_limited_names(m: Mapping[str, Any]) -> frozenset[str]:
    """[L] structures whose distance the measurement marks as limited by the field of view."""
    names = m.get("distances_limited_by_fov")
    return frozenset(str(n) for n in names) if isinstance(names, (list, tuple)) else frozenset()


def distance_text(d: Any, limited: bool, unit: str = "") -> str:
    """A distance; limited by the image edge: "≥ d mm (limited by the field of view)"."""
    if d is None:
        return format_value(d)
    if limited:
        return f"≥ {format_value(d)}{unit} (limited by the field of view)"
    return format_value(d) + unit


def capsule_text(m: Mapping[str, Any], unit: str = "") -> str:
    """[L] the capsule distance; limited by the image edge: "≥ d mm (limited by the field of view)"."""
    return distance_text(m.get("capsule_distance_mm"), bool(m.get("capsule_distance_limited_by_fov")), unit)


def _vessel_text(v: Any, limited: frozenset[str] = frozenset()) -> str:
    if not isinstance(v, Mapping):
        return format_value(v)
    raw = str(v.get("name", v.get("structure", "vessel")))
    name = raw.replace("_", " ")
    bits = [name]
    if v.get("distance_mm") is not None:
        bits.append(f"{distance_text(v['distance_mm'], raw in limited, ' mm')} away")
    cal = v.get("calibre_mm", v.get("diameter_mm"))
    if cal is not None:
        bits.append(f"calibre {format_value(cal)} mm")
    return ", ".join(bits)


def _thumbnail_png(case: Any, lesion_id: str, dpi: int) -> bytes:
    return F.figure_png(F.thumbnail_figure(case, lesion_id)[0], dpi=dpi)


def _views_png(case: Any, lesion_id: str, dpi: int) -> bytes:
    return F.figure_png(F.lesion_views_figure(case, lesion_id)[0], dpi=dpi)


def _territory_png(case: Any, lesion_id: str, segments: Sequence[str], dpi: int) -> bytes:
    return F.figure_png(F.territory_figure(case, lesion_id, segments, modality="regional")[0], dpi=dpi)


def _safe_figure(errors: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Draw a figure; a drawing failure is listed in the report instead of aborting it."""
    try:
        return fn()
    except Exception as exc:  # a missing picture must not lose the whole report: listed in it instead
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def build_context(proposal: Any, *, dpi: int = 110, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the report templates show, from a BoardProposal (or any object with the same fields)."""
    case = proposal.case
    plan_json: Mapping[str, Any] = proposal.plan_json or {}
    measurements: Mapping[str, Any] = proposal.measurements or {}
    plans: Mapping[tuple[str, str], Any] = dict(getattr(proposal, "plans", {}) or {})
    now = now or dt.datetime.now(dt.UTC)
    errors: list[str] = []

    patient = case.patient
    patient_rows = _patient_rows(patient)
    disease_rows = _disease_rows(case, patient, plan_json, measurements)

    m_by_id = {str(m.get("id")): m for m in measurements.get("lesions", []) or []}
    pj_by_id = {str(le.get("id")): le for le in plan_json.get("lesions", []) or []}
    lesion_ids = list(dict.fromkeys([*case.lesion_ids, *pj_by_id]))

    lesion_rows = []
    sections: list[LesionSection] = []
    for lid in lesion_ids:
        meas = m_by_id.get(lid) or (pj_by_id.get(lid, {}).get("measurements") or {})
        lesion_rows.append(_lesion_row(case, lid, meas, dpi, errors))
        section = _lesion_section(case, lid, meas, pj_by_id.get(lid, {}), plans, dpi)
        sections.append(section)
        errors.extend(section.figure_errors)

    strategies = _strategy_rows(plan_json)

    # --- basis -----------------------------------------------------------------------------
    hashes = _input_hashes(case, plan_json)
    engines, limitations = _engines_and_limitations(plans)
    versions = plan_json.get("versions") or {}
    rule_set = plan_json.get("rule_set") or {}
    latplan_version = _latplan_version()

    review = _review_rows(pj_by_id)

    return {
        "title": f"Tumor board case report — {patient.id}",
        "generated_utc": now.strftime("%Y-%m-%d %H:%M UTC"),
        "latplan_version": latplan_version,
        "patient_id": patient.id,
        "patient_rows": patient_rows,
        "disease_rows": disease_rows,
        "lesion_rows": lesion_rows,
        "sections": sections,
        "strategies": strategies,
        "preferences": plan_json.get("preferences"),
        "preference_rows": _preference_rows(plan_json.get("preferences")),
        "sensitivity_rows": _sensitivity_rows(plan_json.get("sensitivity")),
        "rule_set": {"name": format_value(rule_set.get("name")), "version": format_value(rule_set.get("version"))},
        "versions": [(str(k), format_value(v)) for k, v in versions.items()] if isinstance(versions, Mapping) else [],
        "hashes": sorted(hashes.items()),
        "engines": [dict(e, used_for=", ".join(sorted(e["used_for"]))) for e in engines.values()],
        "limitations": limitations,
        "review": review,
        "figure_errors": errors,
        "image_modality": getattr(case, "image_modality", "CT"),
    }


def _patient_rows(patient: Any) -> list[tuple[str, str]]:
    """(label, value) rows of the patient table."""
    return [
        ("pseudonymous id", patient.id),
        ("primary tumour", str(patient.primary.value if hasattr(patient.primary, "value") else patient.primary)),
        ("age", format_value(patient.age) + (" years" if patient.age is not None else "")),
        ("sex", format_value(patient.sex)),
        ("ECOG performance status", format_value(patient.ecog)),
        ("Child–Pugh class", format_value(patient.child_pugh)),
        ("BCLC stage", format_value(patient.bclc_stage)),
        ("histology", format_value(patient.histology)),
        ("extrahepatic sites", format_value(patient.extrahepatic_sites)),
        ("prior therapies", format_value([f"{t.kind}{' (' + t.regimen + ')' if t.regimen else ''}"
                                          for t in patient.prior_therapies] if patient.prior_therapies else None)),
    ]


def _disease_rows(case: Any, patient: Any, plan_json: Mapping[str, Any],
                  measurements: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the disease table, the oligometastatic status first."""
    mpat = measurements.get("patient", {}) or {}
    oligo = (plan_json.get("patient") or {}).get("oligometastatic") or mpat.get("oligometastatic") or {}
    disease_rows = [
        ("number of lesions", format_value(mpat.get("lesion_count", len(case.lesion_ids)))),
        ("organs involved", format_value(mpat.get("organs_involved"))),
        ("liver volume", format_value(mpat.get("liver_volume_ml")) + (" ml" if mpat.get("liver_volume_ml") else "")),
        ("future liver remnant", format_value(mpat.get("future_liver_remnant"))),
    ]
    if patient.is_metastatic:
        text = _oligo_text(oligo)
        disease_rows.insert(0, ("oligometastatic", text))
    else:
        disease_rows.insert(0, ("oligometastatic", "not applicable (primary liver tumour)"))
    return disease_rows


def _lesion_row(case: Any, lid: str, meas: Mapping[str, Any], dpi: int, errors: list[str]) -> dict[str, Any]:
    """One row of the lesion overview table, with its thumbnail (a drawing failure goes to ``errors``)."""
    thumb = None
    if case.has(lid):
        png = _safe_figure(errors, f"{lid} thumbnail", partial(_thumbnail_png, case, lid, dpi))
        thumb = png_uri(png) if png else None
    return {
        "id": lid,
        "title": lid.replace("_", " "),
        "volume": format_value(meas.get("volume_ml")),
        "max_diameter": format_value(meas.get("max_diameter_mm")),
        "axial_diameter": format_value(meas.get("axial_diameter_mm")),
        "segments": ", ".join(str(s).replace("liver_segment_", "") for s in meas.get("segments") or []) or "unknown",
        "capsule": capsule_text(meas),
        "vessel": _vessel_text((meas.get("nearest_vessels") or [None])[0], fov_limited_names(meas))
        if meas.get("nearest_vessels") else "none found",
        "thumbnail": thumb,
    }


def _lesion_section(case: Any, lid: str, meas: Mapping[str, Any], pj_lesion: Mapping[str, Any],
                    plans: Mapping[tuple[str, str], Any], dpi: int) -> LesionSection:
    """The report section of one lesion: slices, ranked options, simulations and the regional territory."""
    sec_errors: list[str] = []
    views = _lesion_views(case, lid, dpi, sec_errors)
    refs = References()
    options = _sorted_options(pj_lesion.get("options", []) or [], refs)
    segments = meas.get("segments") or []
    simulated = []
    for (plid, modality), plan in plans.items():
        if plid != lid:
            continue
        figs = _safe_figure(sec_errors, f"{lid} {modality} pictures",
                            partial(F.plan_figures, case, plan, segments=segments, dpi=dpi)) or []
        simulated.append(_simulated_option(str(modality), plan, figs))
    territory, territory_note = _territory_image(case, lid, options, segments, plans, dpi, sec_errors)
    order = {str(o.get("modality")): i for i, o in enumerate(options)}
    simulated.sort(key=lambda s: order.get(s.modality, 99))
    return LesionSection(lid, lid.replace("_", " "), _measurement_pairs(meas), views, options, simulated,
                         sec_errors, refs.items, territory, territory_note)


def _lesion_views(case: Any, lid: str, dpi: int, errors: list[str]) -> Image | None:
    """Axial, coronal and sagittal slices through the lesion, or None (not in the case, or not drawn)."""
    if not case.has(lid):
        return None
    png = _safe_figure(errors, f"{lid} slices", partial(_views_png, case, lid, dpi))
    return Image(png_uri(png), f"Axial, coronal and sagittal slices through the centre of {lid.replace('_', ' ')}; "
                 "patient's right on the image left.") if png else None


def _simulated_option(modality: str, plan: Any, figs: Sequence[Any]) -> SimulatedOption:
    """What the report shows of one simulated plan, its drawn figures included."""
    return SimulatedOption(
        modality=modality,
        modality_name=modality_name(modality),
        metrics=metric_rows(plan.metrics or {}, modality),
        margin_rows=margin_rows(plan.margin_histogram),
        images=[Image(png_uri(f.png), f.caption, f.key) for f in figs],
        caveats=list(plan.caveats or []),
        engine=plan.engine, engine_version=plan.engine_version, verification=plan.verification,
        parameters=_plan_parameters(plan),
        constraints=constraint_rows(plan.metrics or {}),
    )


def _plan_parameters(plan: Any) -> list[tuple[str, str]]:
    """(name, value) of the plan's scalar parameters and short lists of scalars."""
    return [(_key_name(k), format_value(v)) for k, v in (plan.parameters or {}).items()
            if not isinstance(v, (Mapping, list)) or (isinstance(v, list) and len(v) <= 6
                                                     and not any(isinstance(x, Mapping) for x in v))]


def _territory_image(case: Any, lid: str, options: Sequence[Mapping[str, Any]], segments: Sequence[str],
                     plans: Mapping[tuple[str, str], Any], dpi: int,
                     errors: list[str]) -> tuple[Image | None, str | None]:
    """(territory image, note why it is not drawn) for regional options without a simulation of their own.

    Regional options (TACE, HAI) have no simulation: the target territory is drawn once instead.
    """
    regional = [o["modality_name"] for o in options
                if o["modality"] in _REGIONAL and o["eligibility"] != "contraindicated"
                and (lid, o["modality"]) not in plans]
    territory, territory_note = None, None
    if regional and case.has(lid):
        seg_names = [F._segment_name(x) for x in segments]
        if not seg_names:
            territory_note = "Territory not drawn: the lesion's Couinaud segment is not known (segments not labelled)."
        elif not any(case.has(n) for n in seg_names):
            territory_note = "Territory not drawn: the segment labels are not in this case's label map."
        else:
            png = _safe_figure(errors, f"{lid} territory",
                               partial(_territory_png, case, lid, segments, dpi))
            if png:
                territory = Image(png_uri(png), f"Target territory of the regional options ({', '.join(regional)}): "
                                  "the liver segment(s) holding the lesion.", "territory")
    return territory, territory_note


def _strategy_rows(plan_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ranked treatment strategies with their ordered steps."""
    strategies = []
    for s in sorted(plan_json.get("strategies", []) or [], key=lambda s: (s.get("rank") is None, s.get("rank") or 0)):
        steps = sorted(s.get("steps", []) or [], key=lambda st: st.get("order") or 0)
        strategies.append({
            "rank": s.get("rank"),
            "steps": [{"order": st.get("order"), "modality": modality_name(str(st.get("modality"))),
                       "lesions": ", ".join(str(x).replace("_", " ") for x in st.get("lesion_ids", []) or []) or "all"}
                      for st in steps],
            "rationale": format_value(s.get("rationale")),
            "evidence_level": format_value(s.get("evidence_level")),
        })
    return strategies


def _input_hashes(case: Any, plan_json: Mapping[str, Any]) -> dict[str, str]:
    """Input hashes of the case and of the plan, later sources overriding earlier ones."""
    hashes: dict[str, str] = {}
    for src in (getattr(case, "input_hashes", None) or {}, plan_json.get("input_hashes") or {},
                plan_json.get("inputs") or {}):
        if isinstance(src, Mapping):
            hashes.update({str(k): format_value(v) for k, v in src.items()})
    return hashes


def _engines_and_limitations(
    plans: Mapping[tuple[str, str], Any],
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """The engines the plans used (and what for), and the limitations: plan caveats, then the standard ones."""
    engines: dict[tuple[str, str], dict[str, Any]] = {}
    limitations: list[str] = []
    for plan in plans.values():
        key = (plan.engine or plan.modality, plan.engine_version)
        e = engines.setdefault(key, {"name": plan.engine or plan.modality, "version": plan.engine_version or "unknown",
                                     "verification": plan.verification or "not stated", "used_for": set()})
        e["used_for"].add(modality_name(plan.modality))
        for c in plan.caveats or []:
            line = f"{modality_name(plan.modality)}: {c}"
            if line not in limitations:
                limitations.append(line)
    for std in plain_language()["report_limitations"]:
        if std not in limitations:
            limitations.append(std)
    return engines, limitations


def _latplan_version() -> str:
    try:
        return importlib.metadata.version("latplan")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _review_rows(pj_by_id: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """Lesions with options that need review, and the data missing to assess them."""
    review = []
    for lid, le in pj_by_id.items():
        flagged = [o for o in le.get("options", []) or [] if o.get("needs_review")]
        if not flagged:
            continue
        missing: dict[str, None] = {}
        for o in flagged:
            for c in o.get("cannot_assess") or []:
                for m in (c.get("missing") or [] if isinstance(c, Mapping) else [c]):
                    missing.setdefault(str(m), None)
        review.append({"lesion": lid.replace("_", " "), "options": ", ".join(modality_name(str(o.get("modality")))
                                                                            for o in flagged),
                       "missing": ", ".join(missing) or "see the options"})
    return review


def _flip_text(f: Any) -> str:
    if isinstance(f, Mapping) and f.get("text"):
        return str(f["text"])
    return format_value(f)


def _oligo_text(oligo: Any) -> str:
    """'unknown — definition: seed (Kovács 2021: 1–3 organs, < 5 lesions) — missing: ...'."""
    if not isinstance(oligo, Mapping):
        return format_value(oligo)
    det = oligo.get("details")
    details: Mapping[str, Any] = det if isinstance(det, Mapping) else {}
    status = format_value(oligo.get("status"))
    definition = oligo.get("definition")
    ddef = details.get("definition") if isinstance(details.get("definition"), Mapping) else None
    if isinstance(definition, Mapping):
        ddef, definition = definition, definition.get("name")
    text = status
    if definition:
        text += f" — by the definition: {format_value(definition)}"
    if ddef and (ddef.get("citation") or ddef.get("source")):
        text += f" ({ddef.get('citation') or ddef.get('source')})"
    missing = oligo.get("missing") or details.get("missing")
    if missing:
        text += f" — missing to decide: {', '.join(str(m).replace('_', ' ') for m in missing)}"
    return text


def _preference_rows(prefs: Any) -> list[tuple[str, str]]:
    if not isinstance(prefs, Mapping):
        return [("preferences", format_value(prefs))] if prefs else [("preferences", "not given")]
    rows: list[tuple[str, str]] = []
    if isinstance(prefs.get("weights"), Mapping):
        elicited = prefs.get("elicited")
        rows.append(("elicited from the patient", "yes" if elicited else
                     f"NO — {prefs.get('flag') or 'preferences not yet elicited: equal weights used'}"))
        defaulted = set(prefs.get("defaulted_criteria") or [])
        for k, v in prefs["weights"].items():
            rows.append((f"importance of {str(k).replace('_', ' ')} (0–5)",
                         format_value(v) + (" (default)" if k in defaulted and elicited else "")))
        return rows
    for k, v in prefs.items():
        if isinstance(v, Mapping) and all(not isinstance(x, (Mapping, list)) for x in v.values()):
            rows.extend((f"{_key_name(k)}: {_key_name(str(kk))}", format_value(vv)) for kk, vv in v.items())
        else:
            rows.append((_key_name(k), format_value(v)))
    return rows


def _sensitivity_rows(sens: Any) -> list[str]:
    if sens is None:
        return ["no sensitivity analysis in the plan"]
    if isinstance(sens, str):
        return [sens]
    if isinstance(sens, Mapping) and ("lesions" in sens or "strategies" in sens):
        out = []
        if sens.get("method"):
            out.append(f"method: {sens['method']}")
        for lid, flips in (sens.get("lesions") or {}).items():
            if flips:
                out.extend(f"{str(lid).replace('_', ' ')}: {_flip_text(f)}" for f in flips)
            else:
                out.append(f"{str(lid).replace('_', ' ')}: the top option does not change for any single weight "
                           "within 0–5 (robust to preferences).")
        strategies = sens.get("strategies")
        if strategies:
            out.extend(f"whole-patient strategy: {_flip_text(f)}" for f in strategies)
        elif "strategies" in sens:
            out.append("whole-patient strategy: the top strategy does not change for any single weight within 0–5.")
        return out
    if isinstance(sens, Mapping):
        out = []
        for k, v in sens.items():
            if isinstance(v, list):
                out.extend(f"{_key_name(k)}: {format_value(item)}" for item in v)
            else:
                out.append(f"{_key_name(k)}: {format_value(v)}")
        return out or ["no sensitivity analysis in the plan"]
    if isinstance(sens, list):
        return [format_value(x) for x in sens] or ["no sensitivity analysis in the plan"]
    return [format_value(sens)]


#: rows of the patient's option grid per spot (best-ranked, not contraindicated)
PATIENT_GRID_OPTIONS = 5


def build_patient_context(proposal: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The plain-language option grid (reading age ≈ 12): texts from data/plain_language.yaml,
    ranks, fit and outcome numbers from plan.json (never invented here)."""
    texts = plain_language()
    mods, fits = texts["modalities"], texts["eligibility"]
    plan_json: Mapping[str, Any] = proposal.plan_json or {}
    m_by_id = {str(m.get("id")): m for m in (proposal.measurements or {}).get("lesions", []) or []}
    now = now or dt.datetime.now(dt.UTC)
    lesions = []
    for n, le in enumerate(plan_json.get("lesions", []) or [], start=1):
        lid = str(le.get("id"))
        meas = m_by_id.get(lid) or le.get("measurements") or {}
        diam = meas.get("max_diameter_mm")
        options, not_suitable = [], []
        for o in _sorted_options(le.get("options", []) or []):
            code = str(o.get("modality"))
            t = mods.get(code, {"name": code.upper(), "what": "", "how": "", "stay": "", "effects": ""})
            if o.get("eligibility") == "contraindicated":
                not_suitable.append(t["name"])
                continue
            options.append({
                "name": t["name"], "what": t["what"], "how": t["how"], "stay": t["stay"], "effects": t["effects"],
                "works": _plain_local_control(o.get("local_control_value")),
                "fit": fits.get(str(o.get("eligibility")), "Ask your team."),
                "review": bool(o.get("needs_review")),
            })
        # the grid shows the top choices only (a patient cannot weigh twelve columns of rows);
        # the others are named below it
        more = [o["name"] for o in options[PATIENT_GRID_OPTIONS:]]
        options = options[:PATIENT_GRID_OPTIONS]
        # cut by the edge of the scan: the size is a lower bound and every choice waits for a whole-lesion scan
        truncated = meas.get("truncated_by_fov") is True
        lesions.append({"number": n, "id": lid, "options": options, "not_suitable": not_suitable, "more": more,
                        "size_cm": f"{diam / 10.0:.1f}" if isinstance(diam, (int, float)) else None,
                        "size_word": "at least" if truncated else "about",
                        "truncated": str(texts["truncated_lesion"]).strip() if truncated else None})
    plans = []
    for s in sorted(plan_json.get("strategies", []) or [], key=lambda s: (s.get("rank") is None, s.get("rank") or 0))[:3]:
        steps = sorted(s.get("steps", []) or [], key=lambda st: st.get("order") or 0)
        plans.append(", then ".join(
            f"{mods.get(str(st.get('modality')), {'name': str(st.get('modality'))})['name']}"
            f" for spot {', '.join(_spot_numbers(plan_json, st.get('lesion_ids') or []))}" for st in steps))
    return {"patient_id": proposal.case.patient.id, "generated_utc": now.strftime("%Y-%m-%d"), "lesions": lesions,
            "plans": plans}


def _spot_numbers(plan_json: Mapping[str, Any], ids: Sequence[str]) -> list[str]:
    order = [str(le.get("id")) for le in plan_json.get("lesions", []) or []]
    return [str(order.index(i) + 1) if i in order else str(i) for i in ids] or ["all"]


def _plain_local_control(lc: Any) -> str:
    """'In studies, about 85 in 100 treated tumours did not grow back after 2 years.' — from plan.json
    only, with the wording chosen by the figure's endpoint (local control ≠ response)."""
    if isinstance(lc, Mapping):
        if lc.get("comparable") is False:  # a figure of another endpoint or population: not put beside the others
            return "There is no number for this choice that can be compared with the others. Ask your team."
        val = next((lc[k] for k in ("value_percent", "percent", "rate_percent") if lc.get(k) is not None), None)
        if isinstance(val, (int, float)):
            tp = lc.get("time_point") or lc.get("timepoint")
            months = lc.get("time_point_months")
            if tp is None and isinstance(months, (int, float)):
                tp = _plain_time(months)
            endpoint = str(lc.get("endpoint") or "").lower()
            if "survival" in endpoint:  # overall survival: the person, not the tumour
                return f"In studies, about {round(val)} in 100 people treated this way were alive" + (
                    f" after {tp}." if tp else ".")
            if "response" in endpoint:
                what = "the tumour shrank away on scans"
            elif "control" in endpoint or "progression" in endpoint or not endpoint:
                what = "the treated tumour did not grow back"
            else:
                what = endpoint.replace("_", " ")
            tp_txt = f" after {tp}" if tp else ""
            return f"In studies, for about {round(val)} in 100 people, {what}{tp_txt}."
    if isinstance(lc, (int, float)):
        return f"In studies, for about {round(lc)} in 100 people, the treated tumour did not grow back."
    return "Not known for sure. Ask your team."


def _plain_time(months: float) -> str:
    if months >= 12 and months % 12 == 0:
        years = int(months // 12)
        return f"{years} year" + ("s" if years != 1 else "")
    m = round(months)
    return f"{m} month" + ("s" if m != 1 else "")
