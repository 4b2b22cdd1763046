"""Monitoring a control plane's models: a real Prometheus with shipped rules (prometheus.py,
rules.yml) and `modelport diagnose` (gather.py reads, diagnosis.py reasons). The control plane's
own dashboard pages are in controlplane/dashboard*.py: it serves them, and layers go downwards."""
