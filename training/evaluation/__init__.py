"""Evaluation: metrics (pure functions) and protocols (full ranking, sampled)."""

from training.evaluation.protocols import EvalResult, Scorer, evaluate, evaluate_full, evaluate_sampled, top_k_excluding
from training.evaluation.ranking_metrics import coverage, metrics_from_hits, pessimistic_rank
from training.evaluation.torch_scorer import TorchScorer

__all__ = [
    "EvalResult",
    "Scorer",
    "TorchScorer",
    "coverage",
    "evaluate",
    "evaluate_full",
    "evaluate_sampled",
    "metrics_from_hits",
    "pessimistic_rank",
    "top_k_excluding",
]
