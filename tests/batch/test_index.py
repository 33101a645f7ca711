"""The index's outcome analysis degrades to a stated reason instead of failing the cohort report.

Reference: docs/followup.md — ``outcomes.yaml``'s last follow-up may not precede the first treatment
(``latplan.followup.cohort.load_cohort`` raises ``CaseFolderError`` for it).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from latplan.batch.index import outcome_analysis


def test_bad_outcomes_give_a_reason_not_a_crash(tmp_path: Path) -> None:
    case = tmp_path / "cohort" / "P1"
    case.mkdir(parents=True)
    (case / "case.yaml").write_text(yaml.safe_dump({"patient": {"id": "P1", "primary": "colorectal"}}))
    (case / "treatments.yaml").write_text(yaml.safe_dump(
        {"treatments": [{"lesion": "lesion_1", "modality": "mwa", "date": "2021-05-01"}]}))
    (case / "outcomes.yaml").write_text(yaml.safe_dump({"last_follow_up": "2020-01-01"}))
    df = pd.DataFrame({"patient_id": ["P1"], "lesion": ["lesion_1"], "top_option": ["mwa"]})
    result = outcome_analysis(df, tmp_path / "cohort", tmp_path)
    assert result.cox is None and result.figures == []
    assert "precedes the first treatment" in result.note


def test_no_outcomes_no_analysis(tmp_path: Path) -> None:
    case = tmp_path / "cohort" / "P2"
    case.mkdir(parents=True)
    (case / "case.yaml").write_text(yaml.safe_dump({"patient": {"id": "P2", "primary": "hcc"}}))
    df = pd.DataFrame({"patient_id": ["P2"], "lesion": ["lesion_1"], "top_option": ["rfa"]})
    result = outcome_analysis(df, tmp_path / "cohort", tmp_path)
    assert result.lesions == 0 and "no case folder has treatments.yaml + outcomes.yaml" in result.note
