"""Irreversible electroporation (planner: latplan.planning.electroporation.plan_ire).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `ire`).
"""

from latplan.modalities._common import make

CODE = "ire"
assess, plan = make(CODE)
