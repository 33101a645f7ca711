"""Export tests reuse the report tests' in-memory case builders (tests/support/report_builders.py,
on the test path through pyproject's ``pythonpath``)."""
