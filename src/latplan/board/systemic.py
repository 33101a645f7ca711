"""Systemic context of a strategy: what the molecular profile and the stage say about drugs.

Why: the systemic step of a strategy is not one generic "chemotherapy". MSI-H colorectal
cancer gets immunotherapy first line (KEYNOTE-177); BRAF V600E after first line gets
encorafenib + cetuximab (BEACON); RAS wild-type left-sided disease gets anti-EGFR with
doublet chemotherapy, RAS-mutant does not (ESMO 2023); HER2-positive RAS wild-type gets
HER2-directed therapy in later lines (ESMO 2023). HCC BCLC C: atezolizumab + bevacizumab
(IMbrave150; BCLC 2022). The board's oncologists choose the regimen: this is context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SystemicNote:
    text: str
    evidence_level: str
    reasons: list[dict[str, Any]] = field(default_factory=list)


_CITE = {
    "esmo2023": "Cervantes A et al. Metastatic colorectal cancer: ESMO Clinical Practice Guideline. Ann Oncol 2023;34:10-32",
    "keynote177": "André T et al. Pembrolizumab in MSI-H advanced colorectal cancer (KEYNOTE-177). N Engl J Med "
                  "2020;383:2207-2218",
    "beacon2019": "Kopetz S et al. Encorafenib, binimetinib, and cetuximab in BRAF V600E-mutated colorectal cancer "
                  "(BEACON CRC). N Engl J Med 2019;381:1632-1643",
    "imbrave150": "Finn RS et al. Atezolizumab plus bevacizumab in unresectable hepatocellular carcinoma (IMbrave150). "
                  "N Engl J Med 2020;382:1894-1905",
}


def _reason(rule_id: str, text: str, key: str, level: str) -> dict[str, Any]:
    return {"rule_id": rule_id, "text": text, "citation": _CITE[key], "evidence_level": level, "effect": "information"}


def systemic_context(pctx: Mapping[str, Any]) -> SystemicNote:
    """The systemic step's context from the patient features (molecular status, primary, stage)."""
    primary = pctx.get("primary")
    mol = pctx.get("molecular") or {}
    if primary == "hcc":
        if pctx.get("bclc") in ("C", "B"):
            return SystemicNote("HCC: atezolizumab + bevacizumab first line where eligible (BCLC 2022).", "CEBM 1b",
                                [_reason("SYS-HCC-ATEZO-BEV", "HCC advanced stage: atezolizumab + bevacizumab first line.",
                                         "imbrave150", "CEBM 1b")])
        return SystemicNote("HCC: systemic therapy is for BCLC B not suited to TACE and BCLC C.", "CEBM 5")
    if primary != "colorectal":
        return SystemicNote("Systemic therapy by the primary tumour's guideline.", "CEBM 5")
    parts: list[str] = []
    reasons: list[dict[str, Any]] = []
    level = "CEBM 1b"
    msi = mol.get("msi")
    if msi in ("msi-h", "msi"):
        parts.append("MSI-H: pembrolizumab (immunotherapy) first line")
        reasons.append(_reason("SYS-MSI-H-IO", "MSI-H colorectal cancer: immunotherapy first line.", "keynote177", "CEBM 1b"))
    if mol.get("braf") == "mutant":
        parts.append("BRAF V600E: encorafenib + cetuximab after first line")
        reasons.append(_reason("SYS-BRAF-V600E", "BRAF V600E: encorafenib + cetuximab after first line.", "beacon2019",
                               "CEBM 1b"))
    ras = mol.get("ras")
    if ras == "wildtype":
        parts.append("RAS wild-type: doublet chemotherapy + anti-EGFR (left-sided primary)")
    elif ras == "mutant":
        parts.append("RAS mutant: doublet/triplet chemotherapy ± bevacizumab, no anti-EGFR")
    else:
        parts.append("RAS status unknown: test RAS/BRAF/MSI before choosing the regimen")
        level = "CEBM 5"
    if mol.get("her2") == "positive" and ras != "mutant":
        parts.append("HER2 positive: HER2-directed therapy in later lines")
    if reasons or ras is not None:
        reasons.append(_reason("SYS-CRC-MOLECULAR", "Molecular status (RAS, BRAF, MSI, HER2) shapes the systemic regimen.",
                               "esmo2023", "CEBM 1b"))
    lines = pctx.get("systemic_lines")
    if lines:
        parts.append(f"{lines} line(s) received" + (f", progression under line {pctx.get('systemic_progression_line')}"
                                                    if pctx.get("systemic_progression_line") else ""))
    return SystemicNote("Colorectal: " + "; ".join(parts) + ".", level, reasons)
