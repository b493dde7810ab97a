#!/usr/bin/env bash
# vfio-mig-cts entry point (./cts --help: the subcommands, the suite's options, the exit codes).
#   ./cts [pytest options] [FILE|NODE_ID...]   set up if needed, then run the conformance suite (default: every
#                                              suite, on the embedded mock); test arguments as pytest takes them
#   ./cts selftest              the project's own tests, with ruff and mypy
#   ./cts killmatrix            the fault catalogue against the suite, as a table (reports/kill-matrix.md)
#   ./cts lane [lane options]   build/boot the guest kernel and run the suite against mtty in it
#   ./cts report [DIR...]       the Allure 3 HTML report of the last run (reports/allure-report; needs Node.js 20+)
#   ./cts compare BEFORE AFTER  what changed between two runs' results.json (exit 1 when something got worse)
# The suite, lane, report and compare run in the caller's directory: relative paths are the caller's.
set -euo pipefail
repo=$(cd "$(dirname "$0")" && pwd)
"$repo/scripts/setup.sh"
python=$repo/.venv/bin/python
case "${1:-}" in
  selftest)
    shift
    cd "$repo"
    echo "== ruff"; .venv/bin/ruff check .
    echo "== mypy"; .venv/bin/mypy
    echo "== pytest tests/ (the kill matrix goes to reports/kill-matrix.md)"
    exec .venv/bin/python -m pytest tests -n 2 -p no:cacheprovider --kill-matrix reports "$@"
    ;;
  killmatrix)
    shift
    cd "$repo"
    exec .venv/bin/python -m fixtures.killmatrix "$@"
    ;;
  lane)
    shift
    exec "$python" -P -m lane "$@"
    ;;
  report)
    shift
    exec "$repo/scripts/allure-report" "$@"
    ;;
  compare)
    shift
    exec "$python" -P -m vfio_mig_cts.reports.compare "$@"
    ;;
  *)
    # -P: the caller's directory is not put first on sys.path (its own fixtures/ or tests/ would shadow ours).
    exec "$python" -P -m pytest -p fixtures.plugins --rootdir "$repo" -c "$repo/pyproject.toml" "$@"
    ;;
esac
