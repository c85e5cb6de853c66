#!/usr/bin/env bash
# The project's entry points, on a fresh machine with only python3:
#   ./run.sh demo        fit the estimators on generated data and print coverage / size tables
#   ./run.sh test        the quick lane (what CI runs): every test not marked slow, then the docs
#                        build with warnings as errors; both always run, failing at the end
#   ./run.sh test-slow   the slow lane: the statistical repetitions (tests marked slow)
# Each creates (or reuses) the virtualenv .venv and installs the package with what it needs.
# torch comes through constraints.txt, which pins the local CPU build (no CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")"
venv="${SKCONF_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "installing sklearn-conformal and its dependencies into $venv (log: $venv/pip.log)"
  if ! { "$py" -m pip install --upgrade pip &&
         "$py" -m pip install -c constraints.txt -e ".[torch,test,doc,plot]"; } >"$venv/pip.log" 2>&1; then
    tail -n 40 "$venv/pip.log" >&2; exit 1
  fi
  touch "$stamp"
fi
case "${1:-}" in
  demo)
    shift; exec "$py" -m sklearn_conformal "$@" ;;
  test)
    shift
    status=0
    "$py" -m pytest -n 2 -m "not slow" "$@" || status=$?
    "$py" -m sphinx -W --keep-going -q -b html doc doc/_build/html || status=$((status ? status : 1))
    if [ "$status" -ne 0 ]; then echo "run.sh test: FAILED (exit $status)" >&2; fi
    exit "$status" ;;
  test-slow)
    shift
    exec "$py" -m pytest -n 2 -m slow "$@" ;;
  *)
    echo "usage: $0 demo|test|test-slow" >&2; exit 2 ;;
esac
