"""Search: the objective shared by every engine, the Optuna engine and its workers, the NNI
engine, and study storage helpers."""

from srnas.search.engine import SearchSettings, Worker, prepare_study, run_search
from srnas.search.objective import OBJECTIVES, TRIAL_ATTRS, Evaluation, Objective
from srnas.search.storage import load_study, open_storage, study_dir

__all__ = ["OBJECTIVES", "TRIAL_ATTRS", "Evaluation", "Objective", "SearchSettings", "Worker",
           "load_study", "open_storage", "prepare_study", "run_search", "study_dir"]
