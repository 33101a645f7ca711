"""Radiofrequency ablation (planner: latplan.planning.thermal.plan_rfa).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `rfa`).
"""

from latplan.modalities._common import make

CODE = "rfa"
assess, plan = make(CODE)
