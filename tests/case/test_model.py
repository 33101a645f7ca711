"""Patient (case.yaml) validation, label tables and the Case container."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from latplan.case import Case, LabelTable, Patient, PrimaryTumour, StructureRole
from latplan.errors import EmptyStructureError, GeometryMismatchError, UnknownStructureError
from latplan.imaging import Volume


def test_patient_minimal_and_unknown_is_none() -> None:
    p = Patient(id="DEMO-01", primary="Colorectal")
    assert p.primary is PrimaryTumour.COLORECTAL
    # absent means unknown, never a default that pretends to know
    assert p.pacemaker is None and p.metastatic_sites is None and p.molecular is None


def test_patient_unknown_key_is_named() -> None:
    with pytest.raises(ValidationError, match="favourite_colour"):
        Patient(id="X", primary="hcc", favourite_colour="blue")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ecog"):
        Patient(id="X", primary="hcc", ecog=7)


def test_label_table_maps_totalsegmentator_names() -> None:
    t = LabelTable.from_mapping({5: "liver", 64: "portal_vein_and_splenic_vein", 14: "lung_lower_lobe_right",
                                 13: "lung_middle_lobe_right", 87: "autochthon_right"})
    assert t.role("portal_vein") is StructureRole.PORTAL_VEIN
    assert sorted(t.values_for("lung_right")) == [13, 14]
    with pytest.raises(UnknownStructureError, match="unknown structure name 'banana'"):
        LabelTable.from_mapping({1: "banana"})
    t2 = LabelTable.from_mapping({1: {"name": "tumour_bed", "role": "lesion"}})
    assert t2.lesion_names() == ["tumour_bed"]


def test_case_masks_and_geometry_check() -> None:
    lab = np.zeros((5, 6, 7), np.int16)
    lab[1:4, 1:5, 1:6] = 1
    lab[2, 2, 2] = 2
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    case = Case(Patient(id="T", primary="colorectal"), Volume(np.zeros(lab.shape, np.float32), aff),
                Volume(lab, aff), LabelTable.from_mapping({1: "liver", 2: "lesion_1", 3: "stomach"}))
    assert case.lesion_ids == ["lesion_1"]
    assert case.structure_names() == ["liver", "lesion_1"]  # stomach listed but empty → absent
    assert case.structure("lesion_1").volume_ml == pytest.approx(12 / 1000)
    no_voxels = Case(case.patient, case.image, case.labels, LabelTable.from_mapping({1: "liver", 4: "lesion_2"}))
    with pytest.raises(EmptyStructureError, match="empty mask"):
        no_voxels.lesion_mask("lesion_2")
    with pytest.raises(GeometryMismatchError, match="image and label map"):
        Case(case.patient, Volume(np.zeros((5, 6, 8)), aff), case.labels, case.label_table)


def test_liver_is_union_of_segments_when_no_liver_label() -> None:
    """A label map of Couinaud segments (one label per voxel) still answers mask('liver')."""
    lab = np.zeros((4, 4, 4), np.int16)
    lab[0:2] = 1
    lab[2:4] = 2
    lab[3, 3, 3] = 3
    aff = np.eye(4)
    case = Case(Patient(id="T", primary="colorectal"), Volume(np.zeros(lab.shape, np.float32), aff), Volume(lab, aff),
                LabelTable.from_mapping({1: "liver_segment_7", 2: "liver_segment_8", 3: "lesion_1"}))
    assert case.has("liver")
    assert case.role("liver") is StructureRole.LIVER
    assert int(case.mask_array("liver").sum()) == 63  # segments only, the lesion voxel is not liver tissue
    assert case.names_with_role(StructureRole.LIVER) == ["liver"]
