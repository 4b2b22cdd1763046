"""What a rendered Pod and the image agree on: where the models and the model config are, the
ports, the user, the writable paths, and the shutdown timing. `render` writes Pods that rely on
an image (`modelport build`) with:
- `modelport` on its PATH (the Pods run `modelport serve ...` or `modelport gateway ...`);
- the models under MODELS_DIR/<model>/<version>/, readable by RUN_AS_USER (unless `--no-model`);
- `sleep` (the preStop wait; Debian's python:3.11-slim has it);
- nothing written outside WRITABLE_PATHS (the root file system is mounted read-only)."""

from __future__ import annotations

# The models, one folder per model with <version>/ sub-folders (TF Serving's layout): copied in
# by `modelport build`, or a PersistentVolumeClaim mounted here read-only (`--models volume`).
MODELS_DIR = "/models"
# The model config (TF Serving's model_config_list, as YAML) from the rendered ConfigMap.
CONFIG_DIR = "/etc/modelport"
CONFIG_FILE = "models.yaml"
# The one path a replica writes (Python's tempfile, the server's scratch files): an emptyDir,
# so the root file system stays read-only. Size-limited: a runaway writer is evicted, not a disk
# filled.
WRITABLE_PATHS = ("/tmp",)
SCRATCH_LIMIT = "64Mi"

# TensorFlow Serving's ports (REST 8501, gRPC 8500) and the gateway's (the article's Flask 5000).
REST_PORT = 8501
GRPC_PORT = 8500
GATEWAY_PORT = 5000

# A non-root user of the image (any uid > 0 works; 10001 stays clear of the base image's users).
RUN_AS_USER = 10001

# Shutdown. On a cluster a Pod leaves the Service's endpoints at the same moment its containers
# get SIGTERM, and every node's kube-proxy learns it a little later: for that while new
# connections still arrive. So the preStop hook waits PRE_STOP_SECONDS first (still serving, as
# our local balancer drains before it stops a replica), then SIGTERM: the REST server finishes
# what is under way (uvicorn's graceful timeout, DRAIN_SECONDS), then gRPC (GRPC_DRAIN_SECONDS)
# and the worker threads (JOIN_SECONDS). The grace period covers all of it:
# 5 + 10 + 5 + 5 = 25 s, after which the kubelet sends SIGKILL.
PRE_STOP_SECONDS = 5
DRAIN_SECONDS = 10
GRPC_DRAIN_SECONDS = 5
JOIN_SECONDS = 5
GRACE_SECONDS = PRE_STOP_SECONDS + DRAIN_SECONDS + GRPC_DRAIN_SECONDS + JOIN_SECONDS

# Labels and annotations render adds.
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelport"}
CONFIG_SHA_ANNOTATION = "modelport.io/model-config-sha256"
BASE_PATH_ANNOTATION = "modelport.io/base-path"
