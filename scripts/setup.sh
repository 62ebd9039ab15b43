#!/usr/bin/env bash
# Set up everything svcflow needs on a fresh Debian machine with Python 3.11:
# Debian packages (graphviz, a CJK font, chromium for the report test) when missing,
# a virtualenv in .venv, and the project with its dev dependencies.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
fc-list 2>/dev/null | grep -qi "CJK" || need_apt+=(fonts-noto-cjk fontconfig)
if [ "${SVCFLOW_WITH_BROWSER:-1}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then
  need_apt+=(chromium)
fi
# Debian's own python3.11 first: it is built with profile-guided and link-time optimisation and
# runs the engine about 15 % faster than a plain source build (bench/README.md); then whatever
# python3.11 is on PATH. PYTHON=... chooses another.
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3.11 ]; then PYTHON=/usr/bin/python3.11; else PYTHON=python3.11; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.svcflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing svcflow and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v -E "^WARNING: Location|^\s*$" || true
  .venv/bin/python -c "import engine, flows, visualize, simulation, analytics, prefect, sqlmodel, celpy, chinese_calendar" 
  touch "$stamp"
fi
echo "== set-up done"
