#!/usr/bin/env bash
# vfio-mig-cts entry point.
#   ./cts [pytest options]      set up if needed, then run the conformance suite (default: the embedded mock)
#   ./cts selftest              the project's own tests, with ruff and mypy
#   ./cts killmatrix            the fault catalogue against the suite, as a table (reports/kill-matrix.md)
#   ./cts lane [lane options]   build/boot the guest kernel and run the suite against mtty in it
#   ./cts report [DIR...]       the Allure 3 HTML report of the last run (reports/allure-report; needs Node.js 20+)
#   ./cts compare BEFORE AFTER  what changed between two runs' results.json (exit 1 when something got worse)
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
case "${1:-}" in
  selftest)
    shift
    echo "== ruff"; .venv/bin/ruff check .
    echo "== mypy"; .venv/bin/mypy
    echo "== pytest tests/ (the kill matrix goes to reports/kill-matrix.md)"
    exec .venv/bin/python -m pytest tests -n 2 -p no:cacheprovider --kill-matrix reports "$@"
    ;;
  killmatrix)
    shift
    exec .venv/bin/python -m fixtures.killmatrix "$@"
    ;;
  lane)
    shift
    exec .venv/bin/python -m lane "$@"
    ;;
  report)
    shift
    exec scripts/allure-report "$@"
    ;;
  compare)
    shift
    exec .venv/bin/python -m vfio_mig_cts.reports.compare "$@"
    ;;
  *)
    exec .venv/bin/python -m pytest suites "$@"
    ;;
esac
