"""High-intensity focused ultrasound (rules only).

Eligibility comes from the rule set (knowledge/rules/*.yaml, rules that list `hifu`).
"""

from latplan.modalities._common import make

CODE = "hifu"
assess, plan = make(CODE)
