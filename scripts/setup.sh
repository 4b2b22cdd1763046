#!/usr/bin/env bash
# Shared by the README's two commands: make (or reuse) a virtual environment and install
# modelport into it with the extras asked for. Sourcing it leaves $PY pointing at its python.
# Uses the active virtual environment if there is one, else .venv beside this repository.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  venv="$VIRTUAL_ENV"
else
  venv="$root/.venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
fi
PY="$venv/bin/python"
stamp="$venv/.modelport-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -e "$root${extras:+[$extras]}"
  touch "$stamp"
fi
export PY
