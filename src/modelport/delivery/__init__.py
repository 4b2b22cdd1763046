"""CI/CD for models: a declarative pipeline from new data to production (`definition.py`), its
stage graph (`graph.py`), the stages (`stages.py`, `release.py`), runs and their history
(`runner.py`, `runs.py`), the data-landing trigger (`watch.py`) and CI templates (`ci.py`)."""
