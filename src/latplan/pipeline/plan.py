"""The one chain of latplan's layers: load → measure → assess → simulate → re-assess → strategies
→ rank → write.

``latplan plan``, ``latplan demo``, the web app's planning jobs, follow-up re-planning and cohort
runs all call :func:`plan_case` / :func:`plan_case_folder`; nothing else chains the layers.

* load: :func:`latplan.imaging.case_folder.load_case_folder` (case folder → :class:`~latplan.case.Case`)
* measure: :func:`latplan.anatomy.measurements.measure` (typed lesion and patient measurements) and
  :func:`latplan.anatomy.geometry.case_geometry` (liver, vessel calibre, large vessels, body: once per case),
  in :func:`latplan.pipeline.stages.prepare`
* assess: :func:`latplan.pipeline.stages.assess` (rules per modality; :mod:`latplan.board`)
* simulate: :func:`~latplan.pipeline.stages.simulation_jobs` (one per lesion × modality) →
  :func:`~latplan.pipeline.stages.run_simulations` (here or in worker processes; planners from
  :mod:`latplan.modalities`)
* re-assess, strategies, composite dose, rank: :func:`~latplan.pipeline.stages.finish` (verdicts,
  targets, whole-patient strategies; :mod:`latplan.board`)
* write: :func:`latplan.report.writer.write_reports` (plan.json, report.html/.pdf, appendix, patient.html/.pdf)
  and :func:`latplan.export.write_result_files` (volumes/, meshes, dicom/), all into a staging folder
  that :func:`latplan.imaging.output.output_dir` renames into place when complete
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from latplan.board.proposal import BoardProposal
from latplan.case import Case
from latplan.errors import CaseFolderError
from latplan.export import write_result_files
from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.output import is_latplan_output, output_dir
from latplan.knowledge.rules import default_rule_files
from latplan.pipeline.progress import Progress, silent
from latplan.pipeline.stages import finish, prepare, run_simulations
from latplan.pipeline.types import PlanOptions, PlanResult
from latplan.report.writer import write_reports

__all__ = ["input_sha256", "plan_case", "plan_case_folder", "write_outputs"]

#: pipeline stages, for ``progress(message, done, total)``
_STAGES = ("loading the case folder", "measuring", "assessing and simulating", "writing reports")


def plan_case(case: Case, options: PlanOptions = PlanOptions(), progress: Progress | None = None) -> BoardProposal:
    """Measure, assess, simulate, re-assess, build strategies and rank: the board proposal for ``case``."""
    say = progress or silent
    total = len(_STAGES)
    say(_STAGES[1], 1, total)

    def board_progress(message: str) -> None:
        say(message, 2, total)

    prepared = prepare(case, options, board_progress, on_measured=lambda _m: say(_STAGES[2], 2, total))
    results = run_simulations(prepared.jobs, case, prepared.geometry, options.workers, board_progress)
    return finish(prepared.assessment, results, case, board_progress)


def input_sha256(case: Case, rule_paths: tuple[Path, ...] = ()) -> str:
    """sha256 over every file planning read: the case folder's files (their hashes) and the rule files."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(case.input_hashes.items())).encode("utf-8"))
    for path in [*default_rule_files(), *rule_paths]:
        digest.update(path.name.encode("utf-8"))
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def plan_case_folder(case_dir: Path, out_dir: Path | None, options: PlanOptions = PlanOptions(),
                     progress: Progress | None = None) -> PlanResult:
    """Load ``case_dir``, plan it and (when ``out_dir`` is given) write every result there.

    The output folder is written atomically (:func:`latplan.imaging.output.output_dir`): a folder that
    latplan wrote before (it holds latplan's manifest) is replaced as a whole, so two plans never mix;
    a foreign non-empty folder (e.g. one holding another tool's plan.json) is refused unless
    ``options.overwrite``; a failure leaves the old folder as it was.
    """
    say = progress or silent
    total = len(_STAGES)
    if out_dir is not None and (Path(out_dir) / "plan.json").exists() and not options.overwrite \
            and not is_latplan_output(Path(out_dir)):
        raise CaseFolderError(f"{Path(out_dir) / 'plan.json'} exists already and was not written by latplan: choose "
                              "another output folder or plan with overwrite (--overwrite, PlanOptions(overwrite=True)).")
    say(_STAGES[0], 0, total)
    case = load_case_folder(Path(case_dir))
    proposal = plan_case(case, options, progress)
    files: dict[str, Path] = {}
    if out_dir is not None:
        say(_STAGES[3], 3, total)
        files = write_outputs(proposal, Path(out_dir), options)
    say("done", total, total)
    return PlanResult(proposal=proposal, files=files, input_sha256=input_sha256(case, options.rule_paths))


def write_outputs(proposal: BoardProposal, out_dir: Path, options: PlanOptions = PlanOptions()) -> dict[str, Path]:
    """plan.json, the reports and the result files (volumes, meshes, DICOM) of ``proposal``, atomically."""
    with output_dir(out_dir, overwrite=options.overwrite, kind="plan") as staging:
        staged = write_reports(proposal, staging, pdf=options.pdf)
        staged.update(write_result_files(proposal, staging))
    return {key: out_dir / path.relative_to(staging) for key, path in staged.items()}
