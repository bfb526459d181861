"""Experiments: a teacher, a scratch student and distilled students over seeds, summarised as the papers' tables."""

from training.experiments.runner import run_experiment
from training.experiments.schema import ExperimentConfig, load_experiment

__all__ = ["ExperimentConfig", "load_experiment", "run_experiment"]
