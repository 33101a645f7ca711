"""Tumor-board recommendation: per-lesion options, whole-patient strategies, preferences, plan.json."""

from latplan.board.proposal import BoardProposal, plan_case, plan_json_text, plan_schema, write_plan_json

__all__ = ["BoardProposal", "plan_case", "plan_json_text", "plan_schema", "write_plan_json"]
