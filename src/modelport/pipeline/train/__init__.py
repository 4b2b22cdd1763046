"""Training: `modelport train` (see `training.py`); the configuration in `config.py`."""

from modelport.pipeline.data import Splits
from modelport.pipeline.train.config import Progress, TrainConfig, load_config, model_yaml, pixels
from modelport.pipeline.train.training import train

__all__ = ["Progress", "Splits", "TrainConfig", "load_config", "model_yaml", "pixels", "train"]
