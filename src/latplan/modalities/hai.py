"""Hepatic arterial infusion chemotherapy (rules only).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `hai`).
"""

from latplan.modalities._common import make

CODE = "hai"
assess, plan = make(CODE)
