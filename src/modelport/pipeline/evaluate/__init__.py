"""`modelport evaluate` (`evaluation.py`)."""

from modelport.pipeline.evaluate.evaluation import classification_metrics, diagnose, evaluate

__all__ = ["classification_metrics", "diagnose", "evaluate"]
