"""Surgical resection (rules only; no simulation).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `resection`).
"""

from latplan.modalities._common import make

CODE = "resection"
assess, plan = make(CODE)
