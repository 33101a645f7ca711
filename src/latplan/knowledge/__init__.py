"""The evidence base as data: rules (with a safe condition language), outcome figures, modality profiles."""

from latplan.knowledge.conditions import Condition, Truth
from latplan.knowledge.profiles import load_outcomes, load_profiles
from latplan.knowledge.rules import Rule, RuleSet, load_rule_set, rules_from_text

__all__ = ["Condition", "Rule", "RuleSet", "Truth", "load_outcomes", "load_profiles", "load_rule_set", "rules_from_text"]
