"""`modelport evaluate` (`evaluation.py`)."""

from modelport.pipeline.evaluate.evaluation import METRICS, classification_metrics, diagnose, evaluate

__all__ = ["METRICS", "classification_metrics", "diagnose", "evaluate"]
