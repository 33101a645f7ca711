"""The one place where latplan.batch meets the planning pipeline.

INTERIM: until ``latplan.pipeline`` (issue [H]) is on this branch, this module reproduces the
agreed interface (``PlanOptions``, ``PlanResult``, ``plan_case_folder``) over the board and report
layers. When the pipeline lands, this file becomes a re-export of ``latplan.pipeline``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from latplan.board.proposal import BoardProposal, plan_case
from latplan.imaging.case_folder import load_case_folder
from latplan.knowledge.rules import default_rule_files
from latplan.report.writer import write_reports

__all__ = ["PlanOptions", "PlanResult", "plan_case_folder"]


@dataclass(frozen=True)
class PlanOptions:
    rule_paths: tuple[Path, ...] = ()
    simulate: bool | frozenset[str] = True
    pdf: bool = True
    preferences: Mapping[str, float] | None = None
    workers: int = 1
    overwrite: bool = False


@dataclass
class PlanResult:
    proposal: BoardProposal
    files: dict[str, Path] = field(default_factory=dict)
    input_sha256: str = ""


def plan_case_folder(case_dir: Path, out_dir: Path | None, options: PlanOptions = PlanOptions()) -> PlanResult:
    case = load_case_folder(case_dir)
    proposal = plan_case(case, rule_paths=list(options.rule_paths) or None, simulate=options.simulate,
                         preferences=options.preferences, workers=options.workers)
    files = write_reports(proposal, out_dir, pdf=options.pdf) if out_dir is not None else {}
    digest = hashlib.sha256(json.dumps(sorted(case.input_hashes.items())).encode("utf-8"))
    for path in [*default_rule_files(), *options.rule_paths]:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return PlanResult(proposal, files, digest.hexdigest())
