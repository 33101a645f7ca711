"""Microwave ablation (planner: latplan.planning.thermal.plan_mwa).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `mwa`).
"""

from latplan.modalities._common import make

CODE = "mwa"
assess, plan = make(CODE)
