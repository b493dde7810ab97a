#!/usr/bin/env bash
# Set up vfio-mig-cts on a Debian 12 machine: Python's venv support (apt), then .venv with the
# project and its pinned dependencies (pip). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv python3-pip)
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt-get)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if [ ! -e "$stamp" ]; then
  echo "setup: installing vfio-mig-cts and its pinned dependencies into .venv (pip)"
  .venv/bin/python -m pip install -q --upgrade pip
  # setuptools' note on every editable install ("Editable installation. ... folders in your working
  # directory") is information, not a problem: kept out of the first run's output.
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[dev,lane]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
