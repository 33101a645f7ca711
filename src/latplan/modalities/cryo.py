"""Cryoablation (planner: latplan.planning.thermal.plan_cryo).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `cryo`).
"""

from latplan.modalities._common import make

CODE = "cryo"
assess, plan = make(CODE)
