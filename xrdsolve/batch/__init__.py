"""Batch analysis of many patterns: resumable, fault-tolerant, on a process pool or Dask.

>>> from xrdsolve.batch import expand_inputs, run_batch, BatchConfig
>>> summary = run_batch(expand_inputs(["patterns/"]), "out", config=BatchConfig(task="info"), workers=2)

Results: ``out/results.sqlite`` (one row per input), ``out/outputs/<name>/`` per input,
``out/results.csv``. Re-running resumes. See ``xrdsolve/batch/README.md`` for clusters.
"""

from .errors import BatchError, BatchInputError, TaskUnavailableError, WorkerLostError
from .executors import ExecutorSpec, dask_executor, make_executor, process_pool, wrap_executor
from .export import export_results
from .inputs import BatchInput, expand_inputs, normalise_options, read_manifest
from .runner import BatchConfig, BatchSummary, run_batch
from .store import ResultStore
from .tasks import TASKS, Job, JobResult, run_job

__all__ = [
    "TASKS",
    "BatchConfig",
    "BatchError",
    "BatchInput",
    "BatchInputError",
    "BatchSummary",
    "ExecutorSpec",
    "Job",
    "JobResult",
    "ResultStore",
    "TaskUnavailableError",
    "WorkerLostError",
    "dask_executor",
    "expand_inputs",
    "export_results",
    "make_executor",
    "normalise_options",
    "process_pool",
    "read_manifest",
    "run_batch",
    "run_job",
    "wrap_executor",
]
