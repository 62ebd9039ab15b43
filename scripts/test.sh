#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, as CI does: lint (ruff), types (mypy), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export SVCFLOW_TEST_POSTGRES_URL=${SVCFLOW_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
