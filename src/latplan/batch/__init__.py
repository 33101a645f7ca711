"""latplan.batch: plan cohorts of case folders on Dask distributed (docs/cohorts.md).

* :func:`plan_cohort` — every case folder under a folder, one Dask task per case, atomic per-case
  result folders with a manifest, resumable, a failing case recorded and the rest going on;
* :func:`synth_cohort` — synthetic phantom cohorts (varied primaries, lesions, patients, outcomes);
* :func:`latplan.batch.remote.run_on_dask` — one web planning job on the same Dask cluster.
"""

from latplan.batch.jobs import CaseJob, CaseOutcome, Manifest, fingerprint, read_manifest, run_case_job
from latplan.batch.runner import ClusterSettings, CohortRun, discover_cases, plan_cohort
from latplan.batch.synth import SynthPatient, draw_patient, synth_cohort

__all__ = ["CaseJob", "CaseOutcome", "ClusterSettings", "CohortRun", "Manifest", "SynthPatient", "discover_cases",
           "draw_patient", "fingerprint", "plan_cohort", "read_manifest", "run_case_job", "synth_cohort"]
