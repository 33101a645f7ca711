"""Interstitial HDR brachytherapy (planner: latplan.planning.ibt.plan_ibt).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `ibt`).
"""

from latplan.modalities._common import make

CODE = "ibt"
assess, plan = make(CODE)
