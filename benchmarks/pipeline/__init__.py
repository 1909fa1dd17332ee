"""The whole-pipeline benchmark (``python -m benchmarks.pipeline``; ``--help`` says what it
measures): ``cli`` (options, the run, exit status), ``fleet`` (the private fleet it drives),
``steps`` (the phases and their figures), ``report`` (targets and the printed table)."""

from benchmarks.pipeline.cli import main, parse_args, rate_list, rerun_command
from benchmarks.pipeline.fleet import Generation, PipelineFleet, healthy_after
from benchmarks.pipeline.report import TARGETS, Target, Verdict, print_report, verdicts
from benchmarks.pipeline.steps import (
    Bench,
    LakePoller,
    StorageTally,
    compare,
    cpu_bound_estimate,
    highest_sustained,
    latencies_of,
    step_verdict,
)

__all__ = [
    "TARGETS",
    "Bench",
    "Generation",
    "LakePoller",
    "PipelineFleet",
    "StorageTally",
    "Target",
    "Verdict",
    "compare",
    "cpu_bound_estimate",
    "healthy_after",
    "highest_sustained",
    "latencies_of",
    "main",
    "parse_args",
    "print_report",
    "rate_list",
    "rerun_command",
    "step_verdict",
    "verdicts",
]
