#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a fresh virtualenv with no extras,
# and rehearse a recovery on the local lab from a directory outside the source tree (lab up, triage,
# plan, approve, run --all, report in JSON and HTML, audit verify). Fails if a step fails or if the run
# recovered no host (a wheel without its playbooks fails every host).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/orchestrator-wheel.XXXXXX)
export ORCHESTRATOR_DB=$WORK/run/recovery.db
export ORCHESTRATOR_INVENTORY=$WORK/run/lab/inventory
export ORCHESTRATOR_LAB_DIR=$WORK/run/lab
started=$SECONDS

cleanup() {
  "$WORK/venv/bin/orchestrator" lab down --dir "$ORCHESTRATOR_LAB_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() {  # exit code 1 is "ran, some hosts failed or unreachable": the lab has such hosts on purpose
  echo "== $*"
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then echo "wheel-rehearsal: '$*' failed with exit code $rc" >&2; exit "$rc"; fi
}

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$SRC"
"$PYTHON" -m venv "$WORK/venv"
# No bytecode compiled at install: the ansible package's collections are tens of thousands of modules,
# and only the few a run imports are ever compiled (on first use).
"$WORK/venv/bin/pip" install --quiet --no-compile "$WORK"/dist/*.whl
echo "== installed in $((SECONDS - started))s"
export PATH="$WORK/venv/bin:$PATH"
mkdir -p "$WORK/run" && cd "$WORK/run"   # nothing of the source tree is reachable from here

step orchestrator lab up --hosts 2 --windows 1 --seed 7 --net 127.47.0.0/16 --dir "$ORCHESTRATOR_LAB_DIR"
if [ -f "$ORCHESTRATOR_LAB_DIR/winrm.env" ]; then set -a; . "$ORCHESTRATOR_LAB_DIR/winrm.env"; set +a; fi
step orchestrator doctor
step orchestrator inventory check
step orchestrator triage --timeout 15
step orchestrator plan --max-wave-size 4
step orchestrator plan approve --by "wheel rehearsal"
step orchestrator run --all --yes
step orchestrator status
step orchestrator report --format json -o report.json
step orchestrator report --format html -o report.html
step orchestrator audit verify
grep -q "<style" report.html || { echo "wheel-rehearsal: report.html has no stylesheet" >&2; exit 1; }
recovered=$(orchestrator status --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["by_category"].get("recovered", 0))')
if [ "$recovered" -lt 1 ]; then echo "wheel-rehearsal: no host recovered" >&2; exit 1; fi
echo "wheel rehearsal: $recovered host(s) recovered, in $((SECONDS - started))s"
