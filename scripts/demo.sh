#!/usr/bin/env bash
# One rehearsal from start to finish, on the example hospital inventory and the built-in local lab.
# Every step is a plain `orchestrator` command an operator would type; read along in README.md.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-lab-data}
export ORCHESTRATOR_DB=${ORCHESTRATOR_DB:-$DEMO_DIR/demo.db}
mkdir -p "$DEMO_DIR"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "Check the hospital's inventory (1,850 hosts)" orchestrator inventory check -i inventory/hospital
step "Tier 0: identity and core infrastructure" orchestrator inventory show -i inventory/hospital -l tier0
step "Record the fleet in the state database" orchestrator inventory sync -i inventory/hospital
