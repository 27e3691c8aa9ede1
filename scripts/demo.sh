#!/usr/bin/env bash
# One rehearsal from start to finish on the built-in local lab: lab up, triage, plan, approve, run
# (containment first, then every wave), a person's decisions about the hosts nobody could reach, run
# again, status, report. Every step is a plain `orchestrator` command an operator would type; the
# README walks through the same steps.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-lab-data}
DEMO_HOSTS=${DEMO_HOSTS:-20}
DEMO_WINDOWS=${DEMO_WINDOWS:-2}
DEMO_NET=${DEMO_NET:-127.42.0.0/16}
DEMO_OUT=${DEMO_OUT:-demo-output}   # outlives the lab: the database and the report
export ORCHESTRATOR_DB=${ORCHESTRATOR_DB:-$DEMO_OUT/recovery.db}
export ORCHESTRATOR_INVENTORY=$DEMO_DIR/inventory
export ORCHESTRATOR_LAB_DIR=$DEMO_DIR

# Exit code 1 means "ran, but some hosts failed or were unreachable": the lab has such hosts on purpose.
step() {
  printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"
  local rc=0
  "${@:2}" || rc=$?
  if [ "$rc" -gt 1 ]; then echo "demo: step failed with exit code $rc" >&2; exit "$rc"; fi
}

step "Check the hospital's inventory (1,850 hosts, never contacted)" orchestrator inventory check -i inventory/hospital
mkdir -p "$DEMO_OUT"
# Whatever happens, stop every lab process this demo started (KEEP_LAB=1 leaves the lab up to explore).
[ "${KEEP_LAB:-0}" = 1 ] || trap 'orchestrator lab down --dir "$DEMO_DIR" >/dev/null 2>&1 || true' EXIT
rm -f "$ORCHESTRATOR_DB" "$ORCHESTRATOR_DB-wal" "$ORCHESTRATOR_DB-shm"
step "Bring up the local lab: real sshd hosts and WinRM stand-ins, seeded LockBit scenarios" \
  orchestrator lab up --hosts "$DEMO_HOSTS" --windows "$DEMO_WINDOWS" --seed 7 --net "$DEMO_NET" --dir "$DEMO_DIR"
# The lab's Windows hosts read their password from the environment, as production inventories do.
if [ -f "$DEMO_DIR/winrm.env" ]; then set -a; . "$DEMO_DIR/winrm.env"; set +a; fi
step "Check the lab's inventory" orchestrator inventory check
step "Triage every host in parallel" orchestrator triage --timeout 15
step "Draft the recovery plan" orchestrator plan --max-wave-size 8
step "Read the plan" orchestrator plan show
step "Approve it" orchestrator plan approve --by "demo operator"
step "Rehearse in check mode: nothing changes on any host" orchestrator run --all --check --yes
step "Run: contain every infected host at once, then every wave" orchestrator run --all --yes --retries 1
step "Where are we? Containment, hosts awaiting their dependencies, what a person must do next" orchestrator status
# A person looks at each host nobody could triage (in the lab its console says: system dead, or its key
# changed) and decides to rebuild it out of band, through its reimage method, restored from before the
# encryption the console shows. Every decision is audited with who and why.
INFECTION=$(orchestrator lab status --dir "$DEMO_DIR" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["infection_time"])')
HELD=$(orchestrator plan show --approved --json | python3 -c '
import json, sys
plan = json.load(sys.stdin)
print(" ".join(m["host"] for m in plan["members"] if m["action"] == "hold" and m["verdict"] in ("unreachable", "error")
               and not m["reason"].startswith("protected")))')
for HOST in $HELD; do
  step "A person decides: rebuild $HOST out of band" orchestrator host decide "$HOST" --rebuild \
    --why "console: system dead or not trusted; reimage it through its out-of-band method" --compromised-since "$INFECTION"
done
step "Run again: the decided hosts are rebuilt, the hosts that waited for them reconnect" orchestrator run --all --yes --retries 1
step "Where are we now?" orchestrator status
step "Re-triage: every recovered host must be clean" orchestrator triage --timeout 15
step "Report for the crisis cell and the regulator" orchestrator report --format html -o "$DEMO_OUT/report.html"
step "Verify the audit trail" orchestrator audit verify
[ "${KEEP_LAB:-0}" = 1 ] || step "Stop the lab (the database and the report stay)" orchestrator lab down --dir "$DEMO_DIR"
printf '\nDone. Report: %s/report.html   State: %s   Runner artifacts: runs/\n' "$DEMO_OUT" "$ORCHESTRATOR_DB"
