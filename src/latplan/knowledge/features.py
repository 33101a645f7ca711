"""The features a rule may read, and how they are built from measurements and the patient.

Why: rules are validated on load against this list (an unknown field is a
:class:`~latplan.errors.KnowledgeError`), and every feature keeps *unknown* as ``None``:
a structure that is not segmented has no distance (never a large number), a missing
clinical field stays missing. The evaluator turns ``None`` into ``cannot_assess``.

Inputs: one lesion's measurement dict and the patient-level dict in the shape of
``latplan.anatomy.measure_case`` (issue [A] item 3: ``lesions[]`` with ``max_diameter_mm``,
``distances_mm`` {structure: mm}, ``nearest_vessels[]`` {name, role, distance_mm,
calibre_mm}, ``not_segmented``, ``capsule_distance_mm``, ``segments``; ``patient`` with
``lesion_count``, ``future_liver_remnant`` {ml, percent}, ``oligometastatic`` {...}), and a
:class:`latplan.case.Patient`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from latplan.case.patient import Patient
from latplan.case.vocabulary import (
    CANONICAL_STRUCTURES,
    HOLLOW_ORGAN_ROLES,
    VESSEL_ROLES,
    StructureRole,
    role_of,
)
from latplan.errors import UnknownStructureError
from latplan.knowledge.conditions import AtLeast
from latplan.knowledge.liver import albi, bclc_stage, child_pugh, milan, planned_remnant_percent, up_to_seven

#: lesion features (path below ``lesion.``) → description with unit
LESION_FIELDS: dict[str, str] = {
    "id": "lesion id (lesion_1 ...)",
    "volume_ml": "lesion volume, ml",
    "max_diameter_mm": "maximal 3-D (Feret) diameter, mm",
    "axial_diameter_mm": "longest axial diameter (RECIST 1.1), mm",
    "capsule_distance_mm": "distance to the liver surface, mm (null when the liver is not segmented)",
    "subcapsular": "true when the lesion lies under the liver capsule (measurement flag)",
    "dome": "true when the lesion lies in segment 7/8 within the dome distance of the diaphragm",
    "segments": "Couinaud segments holding the lesion (list of codes), null when not labelled",
    "lobe": "right | left | caudate | both (from segments), null when segments unknown",
    "distance_mm": "surface distance to a structure, mm: lesion.distance_mm.<structure name>",
    "vessels": "list of vessels {name, role, distance_mm, calibre_mm}; unsegmented kinds have nulls",
    "hollow_organs": "list of hollow organs {name, role, distance_mm}; unsegmented ones have null distance",
    "nearest_vessel": "the closest vessel {name, role, distance_mm, calibre_mm}",
    "in_liver": "true when the lesion lies in the liver",
    "organ": "organ holding the lesion (liver, lung, ...)",
}
VESSEL_ITEM_FIELDS = {"name", "role", "distance_mm", "calibre_mm"}
HOLLOW_ITEM_FIELDS = {"name", "role", "distance_mm"}

#: derived patient features (beyond the Patient model's own fields)
PATIENT_DERIVED: dict[str, str] = {
    "is_metastatic": "liver metastases of a non-liver primary (oligometastatic concept applies)",
    "prior_liver_radiotherapy": "any prior radiotherapy (SBRT, IBT, TARE, external) to the liver",
    "bleomycin_cumulative_mg": "cumulative bleomycin received, mg (0 when therapies are known and none gave it)",
    "systemic_lines": "number of systemic lines received",
    "systemic_progression_line": "highest systemic line under which the disease progressed (0 = none)",
    "prior_liver_resections": "number of prior liver resections",
    "extrahepatic_disease": "true when disease outside the liver is known",
    "liver_lesion_count": "number of liver lesions (images)",
    "lesions_one_lobe": "true when all liver lesions lie in one lobe",
    "max_lesion_diameter_mm": "largest liver lesion, mm",
    "flr_percent": "future liver remnant of the smallest resection removing all lesions, % of liver",
    "oligometastatic": "oligometastatic | not_oligometastatic | not_applicable | unknown",
    "surgically_resectable": "surgeon's judgement recorded in case.yaml extra.resectable (true/false)",
    "resection_flr_percent": "remnant after the planned resection (1 cm wedge per lesion <= 50 mm, else the "
                             "anatomic resection of the touched segments), % of liver",
    "child_pugh_class": "Child-Pugh class in force: recorded wins, else computed from complete components",
    "child_pugh_points": "Child-Pugh score in force (recorded, else computed when every component is known)",
    "child_pugh_points_max": "highest Child-Pugh score compatible with the known components (unknown = 3 points)",
    "albi_grade": "ALBI grade 1-3 (Johnson 2015) from bilirubin and albumin",
    "bclc": "BCLC stage in force: recorded wins, else derived from burden, Child-Pugh and ECOG (BCLC 2022)",
    "bclc_derived": "BCLC stage derived from burden, Child-Pugh and ECOG",
    "milan": "within the Milan criteria (HCC)",
    "up_to_7": "within the up-to-seven criteria (HCC)",
    "main_portal_vein_thrombosis": "thrombosis of the main portal vein (extent 'main'); unknown when PVT extent is not given",
    "systemic_progression": "true when the disease progressed under any systemic line",
    "last_therapy": "kind of the most recent prior therapy (list order or date)",
    "recent_tace": "TACE among the two most recent prior therapies (e.g. TACE, then IBT of the residual)",
    "prior_liver_rt_dose_gy": "highest recorded prior liver radiotherapy dose, Gy",
    "ras_known": "true when RAS status is recorded",
    "cardiac_device": "pacemaker or ICD (true when either is recorded true)",
    "prior_liver_local_therapies": "number of prior liver resections and focal ablative liver therapies (RFA, MWA, "
                                   "cryo, HIFU, ECT, IRE, IBT, SBRT)",
    "judged_unresectable": "true when the surgeons recorded the disease as unresectable (false when not recorded)",
}
#: list fields of the Patient model the language may not index (use derived features)
_PATIENT_MODEL_FIELDS = set(Patient.model_fields)
_NESTED = {
    "molecular": {"ras", "braf", "msi", "her2"},
    "labs": {"bilirubin_mg_dl", "albumin_g_dl", "inr", "platelets_g_l", "egfr_ml_min", "afp_ng_ml", "cea_ng_ml",
             "creatinine_mg_dl", "creatinine_clearance_ml_min"},
    "biliary": {"bilioenteric_anastomosis", "stent", "sphincterotomy"},
    "tare": {"lung_shunt_fraction", "tumour_to_normal_ratio"},
    "preferences": {"local_control", "invasiveness", "recovery_time", "side_effects", "sessions",
                    "repeatability", "hospital_stay"},
}

#: simulation features (``simulation.<key>``) usable by outcome figures and simulation rules
SIMULATION_FIELDS = {"min_margin_mm", "coverage_percent", "d100_gy", "d90_gy", "v100_percent",
                     "liver_v5gy_percent", "feasible", "bed_gy", "activity_gbq"}
#: option parameters (``option.<key>``)
OPTION_FIELDS = {"target_margin_mm", "modality"}
#: strategy rules may also read the strategy they score: its kind and the modalities of its steps
STRATEGY_FIELDS = {"kind", "modalities"}


def validate_path(path: str, list_path: str | None) -> str | None:
    """Error message when ``path`` is not a known feature, else None (for Condition.compile)."""
    if list_path is not None and "." not in path:
        allowed = VESSEL_ITEM_FIELDS if list_path.endswith("vessels") else HOLLOW_ITEM_FIELDS
        if path in allowed:
            return None
        return f"unknown field {path!r} of the elements of {list_path} (known: {', '.join(sorted(allowed))})."
    head, _, rest = path.partition(".")
    if head == "lesion":
        first, _, sub = rest.partition(".")
        if first not in LESION_FIELDS:
            return f"unknown lesion field {path!r}; known: {', '.join(sorted(LESION_FIELDS))}."
        if first == "distance_mm":
            if not sub:
                return "lesion.distance_mm needs a structure name, e.g. lesion.distance_mm.stomach."
            try:
                role_of(sub)
            except UnknownStructureError:
                return f"{path!r}: {sub!r} is not a canonical structure name ({', '.join(sorted(CANONICAL_STRUCTURES))})."
            return None
        if first == "nearest_vessel" and sub and sub not in VESSEL_ITEM_FIELDS:
            return f"unknown field {path!r}; nearest_vessel has {', '.join(sorted(VESSEL_ITEM_FIELDS))}."
        return None
    if head == "patient":
        first, _, sub = rest.partition(".")
        if first in PATIENT_DERIVED:
            return None
        if first not in _PATIENT_MODEL_FIELDS:
            known = sorted(_PATIENT_MODEL_FIELDS | set(PATIENT_DERIVED))
            return f"unknown patient field {path!r}; known: {', '.join(known)}."
        if sub and first in _NESTED and sub not in _NESTED[first]:
            return f"unknown field {path!r}; {first} has {', '.join(sorted(_NESTED[first]))}."
        return None
    if head == "simulation":
        return None if rest in SIMULATION_FIELDS else f"unknown simulation field {path!r}; known: {sorted(SIMULATION_FIELDS)}."
    if head == "option":
        return None if rest in OPTION_FIELDS else f"unknown option field {path!r}; known: {sorted(OPTION_FIELDS)}."
    if head == "strategy":
        return None if rest in STRATEGY_FIELDS else f"unknown strategy field {path!r}; known: {sorted(STRATEGY_FIELDS)}."
    return f"unknown field {path!r}: fields start with lesion., patient., simulation., option. or strategy."


def _role(name: str, given: Any = None) -> StructureRole | None:
    if given:
        try:
            return StructureRole(str(given))
        except ValueError:
            pass
    try:
        return role_of(name)
    except UnknownStructureError:
        return None


def _lobe(segments: Sequence[str] | None) -> str | None:
    if not segments:
        return None
    lobes = set()
    for s in segments:
        s = str(s).lower().removeprefix("liver_segment_").removeprefix("s")
        if s in ("5", "6", "7", "8"):
            lobes.add("right")
        elif s in ("2", "3", "4", "4a", "4b"):
            lobes.add("left")
        elif s == "1":
            lobes.add("caudate")
    if not lobes:
        return None
    return lobes.pop() if len(lobes) == 1 else "both"


#: structures inside (or forming) the liver: their absence says nothing about distance
INTRAHEPATIC_ROLES = frozenset({StructureRole.PORTAL_VEIN, StructureRole.HEPATIC_VEIN, StructureRole.HEPATIC_ARTERY,
                                StructureRole.BILE_DUCT, StructureRole.LIVER_SEGMENT, StructureRole.INFERIOR_VENA_CAVA,
                                StructureRole.LIVER, StructureRole.LESION})

#: a lesion in segment 7/8 this close to the diaphragm/lung counts as a dome lesion (mm)
DOME_DISTANCE_MM = 10.0


def lesion_features(lesion: Mapping[str, Any]) -> dict[str, Any]:
    """Rule features of one lesion from its measurement dict (unknown stays None)."""
    distances: dict[str, float | None] = {k: (None if v is None else float(v))
                                          for k, v in (lesion.get("distances_mm") or {}).items()}
    not_segmented = [str(n) for n in (lesion.get("not_segmented") or [])]
    capsule = lesion.get("capsule_distance_mm")
    for name in not_segmented:
        role = _role(name)
        if capsule is not None and role is not None and role not in INTRAHEPATIC_ROLES:
            # an organ outside the liver is at least as far from a liver lesion as the liver surface
            distances[name] = AtLeast(float(capsule), (f"lesion.distance_mm.{name}",))  # type: ignore[assignment]
        else:
            distances[name] = None

    # a distance the image edge limits is a lower bound, never the true value ([L] field of view)
    for name in lesion.get("distances_limited_by_fov") or []:
        d = distances.get(str(name))
        if isinstance(d, (int, float)):
            distances[str(name)] = AtLeast(float(d), (f"lesion.distance_mm.{name} (limited by the field of view)",))  # type: ignore[assignment]
    capsule_feature: Any = capsule
    if capsule is not None and lesion.get("capsule_distance_limited_by_fov"):
        capsule_feature = AtLeast(float(capsule), ("lesion.capsule_distance_mm (limited by the field of view)",))

    vessels: list[dict[str, Any]] = []
    for v in lesion.get("nearest_vessels") or []:
        name = str(v.get("name"))
        role = _role(name, v.get("role"))
        vessels.append({"name": name, "role": role.value if role else v.get("role"),
                        "distance_mm": v.get("distance_mm"), "calibre_mm": v.get("calibre_mm")})
    # vessels >= the measurement's minimum calibre within its perivascular distance, sampled along the
    # vessel ([A] heat_sink_vessels): the nearest point of a vessel may be a thin branch while a thick
    # part of it lies a little further away
    for v in lesion.get("heat_sink_vessels") or []:
        name = str(v.get("name"))
        role = _role(name, v.get("role"))
        vessels.append({"name": name, "role": role.value if role else v.get("role"),
                        "distance_mm": v.get("distance_mm"), "calibre_mm": v.get("calibre_mm")})
    present_roles = {v["role"] for v in vessels}
    for name in not_segmented:
        role = _role(name)
        if role in VESSEL_ROLES and role.value not in present_roles:  # type: ignore[union-attr]
            vessels.append({"name": name, "role": role.value, "distance_mm": None, "calibre_mm": None})  # type: ignore[union-attr]
            present_roles.add(role.value)  # type: ignore[union-attr]

    hollow: list[dict[str, Any]] = []
    for name, d in distances.items():
        role = _role(name)
        if role in HOLLOW_ORGAN_ROLES:
            hollow.append({"name": name, "role": role.value, "distance_mm": d})  # type: ignore[union-attr]

    known_vessels = [v for v in vessels if isinstance(v["distance_mm"], (int, float))]
    nearest = min(known_vessels, key=lambda v: v["distance_mm"]) if known_vessels else None

    segments = lesion.get("segments")
    seg_codes = [str(s).removeprefix("liver_segment_") for s in segments] if segments else None
    subcapsular = lesion.get("subcapsular")
    dome = lesion.get("dome")
    if seg_codes is not None and not any(s in ("7", "8") for s in seg_codes):
        dome = False  # the dome is segments 7/8 (a measurement flag on another segment is overruled)
    if dome is None and seg_codes is not None:
        dia = distances.get("diaphragm")
        if not any(s in ("7", "8") for s in seg_codes):
            dome = False
        elif isinstance(dia, (int, float)):
            dome = dia <= DOME_DISTANCE_MM
    in_liver = lesion.get("in_liver")
    if in_liver is None and lesion.get("organ") is not None:
        in_liver = str(lesion.get("organ")) == "liver"
    if in_liver is None:
        in_liver = True  # measure_case lists liver lesions; extrahepatic ones carry organ != liver
    return {
        "id": lesion.get("id"),
        "volume_ml": lesion.get("volume_ml"),
        "max_diameter_mm": lesion.get("max_diameter_mm"),
        "axial_diameter_mm": lesion.get("axial_diameter_mm"),
        "capsule_distance_mm": capsule_feature,
        "subcapsular": subcapsular,
        "dome": dome,
        "segments": seg_codes,
        "lobe": _lobe(seg_codes),
        "distance_mm": distances,
        "vessels": vessels,
        "hollow_organs": hollow,
        "nearest_vessel": nearest,
        "in_liver": in_liver,
        "organ": str(lesion.get("organ") or "liver"),
    }


_LIVER_WORDS = ("liver", "hepat", "segment", "couinaud")


def _resectable(extra: Mapping[str, Any]) -> bool | None:
    """The surgeon's judgement from case.yaml ``extra``: ``resectable: true/false`` or a
    ``resectability`` sentence containing "unresectable"/"not resectable" (False) or "resectable" (True)."""
    for key in ("resectable", "surgically_resectable"):
        if isinstance(extra.get(key), bool):
            return bool(extra[key])
    text = extra.get("resectability")
    if isinstance(text, str):
        t = text.lower()
        if "unresectable" in t or "not resectable" in t or "non-resectable" in t:
            return False
        if "resectable" in t:
            return True
    return None


def patient_features(patient: Patient, patient_measurements: Mapping[str, Any] | None = None,
                     lesions: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Rule features of the patient: the model's fields plus derived facts (unknown = None)."""
    out: dict[str, Any] = patient.model_dump(mode="json")
    out["primary"] = patient.primary.value
    out["is_metastatic"] = patient.is_metastatic

    therapies = patient.prior_therapies
    # prior liver radiotherapy
    prior_rt: bool | None = None
    if patient.prior_radiotherapy is not None:
        prior_rt = any(any(w in (r.site or "").lower() for w in _LIVER_WORDS) for r in patient.prior_radiotherapy)
    if therapies is not None:
        rt_kinds = {"sbrt", "ibt", "tare", "radiotherapy"}
        hit = any(t.kind in rt_kinds and (t.kind == "tare" or any(w in (t.site or "liver").lower() for w in _LIVER_WORDS))
                  for t in therapies)
        prior_rt = True if hit else (prior_rt if prior_rt is not None else False)
    out["prior_liver_radiotherapy"] = prior_rt

    bleo: float | None = None
    lines: int | None = None
    prog: int | None = None
    resections: int | None = None
    if therapies is not None:
        ect = [t for t in therapies if t.kind == "ect" or t.bleomycin_cumulative_mg is not None]
        if any(t.kind == "ect" and t.bleomycin_cumulative_mg is None for t in ect):
            bleo = None
        else:
            bleo = float(sum(t.bleomycin_cumulative_mg or 0.0 for t in ect))
        systemic = [t for t in therapies if t.kind == "systemic"]
        lines = max([t.line or 0 for t in systemic] + [len(systemic)]) if systemic else 0
        progressed = [t.line or (i + 1) for i, t in enumerate(systemic) if t.response == "progression"]
        prog = max(progressed) if progressed else 0
        # liver resections only: a resection of the primary (colon, rectum...) does not count; a resection
        # without a site counts (conservative for the repeat-hepatectomy caution)
        resections = sum(1 for t in therapies if t.kind == "resection"
                         and (t.site is None or any(w in t.site.lower() for w in (*_LIVER_WORDS, "metastasectomy"))))
    out["bleomycin_cumulative_mg"] = bleo
    out["systemic_lines"] = lines
    out["systemic_progression_line"] = prog
    out["prior_liver_resections"] = resections
    focal = {"rfa", "mwa", "cryo", "hifu", "ect", "ire", "ibt", "sbrt"}
    out["prior_liver_local_therapies"] = None if therapies is None else (resections or 0) + sum(
        1 for t in therapies if t.kind in focal and (t.site is None or any(w in t.site.lower() for w in _LIVER_WORDS)))

    extra_hep: bool | None = None
    if patient.extrahepatic_sites is not None:
        extra_hep = len(patient.extrahepatic_sites) > 0
    if patient.metastatic_sites is not None:
        others = [s for s in patient.metastatic_sites if s.organ.lower() != "liver"]
        extra_hep = bool(others) or bool(extra_hep)
    out["extrahepatic_disease"] = extra_hep

    pm = dict(patient_measurements or {})
    lesions = list(lesions or [])
    liver_lesions = [les for les in lesions if lesion_features(les)["in_liver"]]
    out["liver_lesion_count"] = pm.get("liver_lesion_count", len(liver_lesions) if lesions else pm.get("lesion_count"))
    lobes = [lesion_features(les)["lobe"] for les in liver_lesions]
    if not lobes or any(lb is None for lb in lobes):
        out["lesions_one_lobe"] = None
    else:
        out["lesions_one_lobe"] = len(set(lobes)) == 1 and lobes[0] in ("right", "left")
    diams = [les.get("max_diameter_mm") for les in liver_lesions]
    known = [float(d) for d in diams if d is not None]
    out["max_lesion_diameter_mm"] = max(known) if diams and len(known) == len(diams) else None
    flr = pm.get("future_liver_remnant")
    out["flr_percent"] = flr.get("percent") if isinstance(flr, Mapping) else None
    oligo = pm.get("oligometastatic")
    out["oligometastatic"] = oligo.get("status") if isinstance(oligo, Mapping) else oligo
    out["surgically_resectable"] = _resectable(patient.extra)
    out["judged_unresectable"] = out["surgically_resectable"] is False
    _liver_function(out, patient, pm, liver_lesions)
    _history(out, patient)
    return out


def _liver_function(out: dict[str, Any], patient: Patient, pm: Mapping[str, Any],
                    liver_lesions: Sequence[Mapping[str, Any]]) -> None:
    """Child-Pugh, ALBI, BCLC, Milan / up-to-7 and the planned-resection remnant (latplan.knowledge.liver)."""
    cp = child_pugh(patient)
    out["child_pugh_detail"] = cp.to_json()
    out["child_pugh_class"] = cp.effective_class
    out["child_pugh_points"] = cp.effective_score
    out["child_pugh_points_max"] = cp.recorded_score if cp.recorded_score is not None else cp.score_high
    out["albi_score"], out["albi_grade"] = albi(patient)
    diams = [les.get("max_diameter_mm") for les in liver_lesions]
    n = len(liver_lesions) or None
    derived = bclc_stage(n, diams, cp.effective_class, patient.ecog, patient.vascular_invasion,
                         out.get("extrahepatic_disease")) if patient.primary.value == "hcc" else None
    out["bclc_derived"] = derived
    out["bclc"] = patient.bclc_stage or derived
    out["bclc_disagreement"] = (f"recorded BCLC {patient.bclc_stage} but burden/Child-Pugh/ECOG give {derived}"
                                if patient.bclc_stage and derived and patient.bclc_stage != derived else None)
    out["milan"] = milan(n, diams, patient.vascular_invasion, out.get("extrahepatic_disease"))
    out["up_to_7"] = up_to_seven(n, diams, patient.vascular_invasion)
    wedge = planned_remnant_percent(pm.get("liver_volume_ml"), diams)
    anatomic = out.get("flr_percent")
    big = any(d is not None and d > 50 for d in diams)
    out["resection_flr_percent"] = anatomic if (big or wedge is None) else max(wedge, anatomic or 0.0)
    out["resection_plan"] = ("anatomic resection of the touched segments" if (big or wedge is None)
                             else "parenchyma-sparing resection, 1 cm margin per lesion")
    ext = patient.portal_vein_thrombosis_extent
    pvt = patient.portal_vein_thrombosis
    out["main_portal_vein_thrombosis"] = (ext == "main") if ext is not None else (False if pvt is False else None)
    ras = patient.molecular.ras if patient.molecular else None
    out["ras_known"] = ras is not None
    out["cardiac_device"] = True if (patient.pacemaker or patient.icd) else (
        False if patient.pacemaker is False and patient.icd is not True else None)


def _history(out: dict[str, Any], patient: Patient) -> None:
    prog = out.get("systemic_progression_line")
    out["systemic_progression"] = None if prog is None else prog >= 1
    therapies = patient.prior_therapies
    if therapies:
        dated = [t for t in therapies if t.date is not None]
        ordered = sorted(dated, key=lambda t: t.date) if len(dated) == len(therapies) else list(therapies)  # type: ignore[arg-type,return-value]
        out["last_therapy"] = ordered[-1].kind
        # TACE among the two latest treatments (TACE, then IBT of the residual: seed Figure 2)
        out["recent_tace"] = any(t.kind == "tace" for t in ordered[-2:])
    else:
        out["last_therapy"] = None if therapies is None else "none"
        out["recent_tace"] = None if therapies is None else False
    doses = [r.dose_gy for r in (patient.prior_radiotherapy or []) if r.dose_gy is not None
             and any(w in (r.site or "liver").lower() for w in _LIVER_WORDS)]
    out["prior_liver_rt_dose_gy"] = max(doses) if doses else (0.0 if patient.prior_radiotherapy == [] else None)
