#!/usr/bin/env bash
# The model lifecycle of the MNIST example, start to end:
#   train -> evaluate (report.html) -> publish with a gate -> label production -> serve that label.
#
#   bash examples/mnist/lifecycle.sh           # the fast model (scikit-learn MLP, seconds)
#   bash examples/mnist/lifecycle.sh --full    # the CNN (PyTorch, a few minutes on 2 cores)
#
# Environment: MODELPORT (the CLI; default: modelport on PATH), MODELPORT_HOME (the registry;
# default ~/.modelport), WORK (scratch folder; default a new temporary one), REPOSITORY (where
# the registry writes what it serves, first publish only), EPOCHS (train this many instead of the
# config's; the gate still applies), SERVE=1 to serve at the end.
set -euo pipefail
mp="${MODELPORT:-modelport}"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="$here/mlp.yaml" gate="accuracy>=0.93"
if [ "${1:-}" = "--full" ]; then
  config="$here/cnn.yaml" gate="accuracy>=0.975"
fi

echo "== 1. train ($(basename "$config"))"
"$mp" train -f "$config" ${EPOCHS:+--epochs "$EPOCHS"} --out "$work/candidate"

echo "== 2. evaluate the ONNX file that will be served"
"$mp" evaluate "$work/candidate" --out "$work/evaluation"

echo "== 3. publish, refused unless $gate"
"$mp" registry publish mnist "$work/candidate" --metrics "$work/evaluation/evaluation.json" \
  --gate "$gate" ${REPOSITORY:+--repository "$REPOSITORY"}
version="$("$mp" registry list mnist -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["version"])')"

echo "== 4. label version $version production, and serve what production points at"
"$mp" registry label mnist production "$version"
"$mp" registry policy mnist label:production
"$mp" registry list mnist

cat <<MSG

  report:  $work/evaluation/report.html
  serve:   $mp serve --rest_api_port=8501 --model_name=mnist --model_base_path=registry://mnist@production
MSG
if [ "${SERVE:-0}" = 1 ]; then
  exec "$mp" serve --rest_api_port=8501 --model_name=mnist --model_base_path=registry://mnist@production
fi
