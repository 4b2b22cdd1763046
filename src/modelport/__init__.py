"""modelport: take a trained model all the way to a monitored production service."""

__version__ = "0.1.0"
