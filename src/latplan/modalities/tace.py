"""Transarterial chemoembolisation, TACE/DEBIRI (rules only).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `tace`).
"""

from latplan.modalities._common import make

CODE = "tace"
assess, plan = make(CODE)
