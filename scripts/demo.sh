#!/usr/bin/env bash
# Set up (if needed) and run the svcflow demo. Pass --keep to keep the Prefect server up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
SVCFLOW_WITH_BROWSER=${SVCFLOW_WITH_BROWSER:-0} ./scripts/setup.sh
exec .venv/bin/svcflow demo "$@"
