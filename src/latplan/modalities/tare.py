"""Radioembolisation, Y-90 (planner: latplan.planning.tare.plan_tare).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `tare`).
"""

from latplan.modalities._common import make

CODE = "tare"
assess, plan = make(CODE)
