#!/usr/bin/env bash
# vfio-mig-cts entry point.
#   ./cts [pytest options]      set up if needed, then run the conformance suite (default: the embedded mock)
#   ./cts selftest              the project's own tests, with ruff and mypy
#   ./cts lane [lane options]   build/boot the guest kernel and run the suite against mtty in it
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
case "${1:-}" in
  selftest)
    shift
    echo "== ruff"; .venv/bin/ruff check .
    echo "== mypy"; .venv/bin/mypy
    echo "== pytest tests/"; exec .venv/bin/python -m pytest tests -n 2 -p no:cacheprovider "$@"
    ;;
  lane)
    shift
    exec .venv/bin/python -m lane "$@"
    ;;
  *)
    exec .venv/bin/python -m pytest suites "$@"
    ;;
esac
