"""Per-lesion and patient-level measurements (issue [A], engineer A2); see docs/measurements.md.

``measure_case(case) -> dict`` (JSON-serialisable, validated by ``measure.schema.json``);
``liver_mask(case)`` gives the liver as the union of ``liver`` and its segments.
"""

from latplan.anatomy.measure import (
    MEASURE_SCHEMA_VERSION,
    liver_mask,
    load_oligometastatic_definitions,
    measure_case,
    measure_schema,
    measurement_parameters,
    structure_mask,
    validate_measurements,
)

__all__ = [
    "MEASURE_SCHEMA_VERSION",
    "liver_mask",
    "load_oligometastatic_definitions",
    "measure_case",
    "measure_schema",
    "measurement_parameters",
    "structure_mask",
    "validate_measurements",
]
