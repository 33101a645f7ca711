"""Electrochemotherapy (planner: latplan.planning.electroporation.plan_ect).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `ect`).
"""

from latplan.modalities._common import make

CODE = "ect"
assess, plan = make(CODE)
