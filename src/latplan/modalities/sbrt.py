"""Stereotactic body radiotherapy (planner: latplan.planning.sbrt.plan_sbrt).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `sbrt`).
"""

from latplan.modalities._common import make

CODE = "sbrt"
assess, plan = make(CODE)
