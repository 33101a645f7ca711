"""docs/case-format.md documents every Patient field; examples/case.yaml validates (docs stay true)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel

from latplan.case import Patient
from latplan.imaging.case_folder import CASE_YAML_KEYS, parse_patient

ROOT = Path(__file__).resolve().parents[2]


def _fields(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        ann = info.annotation
        for arg in (*getattr(ann, "__args__", ()), ann):
            for sub in (*getattr(arg, "__args__", ()), arg):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    names |= _fields(sub)
    return names


def test_every_patient_field_is_documented():
    """Every field of Patient and its sub-models, and every case.yaml key, appears in docs/case-format.md."""
    text = (ROOT / "docs" / "case-format.md").read_text()
    missing = sorted(f for f in _fields(Patient) | set(CASE_YAML_KEYS) if f"`{f}`" not in text)
    assert missing == []


def test_example_case_yaml_is_valid():
    """examples/case.yaml (the issue's example) parses into a Patient with its values."""
    data = yaml.safe_load((ROOT / "examples" / "case.yaml").read_text())
    assert set(data) <= set(CASE_YAML_KEYS)
    p = parse_patient(data["patient"])
    assert p.id == "DEMO-01" and p.primary.value == "colorectal"
    assert p.tare is not None and p.tare.lung_shunt_fraction == 0.06
    assert p.cirrhosis is None  # absent = unknown
