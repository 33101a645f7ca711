"""latplan.pipeline: the one place that chains the layers (load → measure → assess → simulate →
re-assess → strategies → rank → write). See docs/architecture.md.

Public API::

    plan_case(case, options=PlanOptions(), progress=None) -> BoardProposal
    plan_case_folder(case_dir, out_dir, options=PlanOptions(), progress=None) -> PlanResult
    stages (latplan.pipeline.stages): assess → simulation_jobs → run_simulation(s) → finish
    run_demo(out_dir, names=None, *, simulate=True, pdf=True, progress=None, workers=1) -> DemoResult
    Progress: progress(message, done=None, total=None); terminal_progress() for the CLI
"""

from latplan.pipeline.demo import DemoResult, run_demo, run_fig2_followup_demo
from latplan.pipeline.plan import input_sha256, plan_case, plan_case_folder
from latplan.pipeline.progress import PlainProgress, Progress, silent, terminal_progress
from latplan.pipeline.stages import (
    CaseAssessment,
    PreparedCase,
    SimulationJob,
    SimulationResult,
    assess,
    finish,
    prepare,
    run_simulation,
    run_simulations,
    simulation_jobs,
)
from latplan.pipeline.types import PlanOptions, PlanResult

__all__ = ["CaseAssessment", "DemoResult", "PlainProgress", "PlanOptions", "PlanResult", "PreparedCase", "Progress", "SimulationJob",
           "SimulationResult", "assess", "finish", "input_sha256", "plan_case", "plan_case_folder", "prepare", "run_demo",
           "run_fig2_followup_demo", "run_simulation", "run_simulations", "silent", "simulation_jobs",
           "terminal_progress"]
