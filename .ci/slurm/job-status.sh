#!/usr/bin/env bash
# job-status.sh JOBID [--jobcomp]: state and exit code of a job (or of every task of an array)
# without slurmdbd. One line per job/array task:
#     <raw JobId> <ArrayJobId_TaskId or -> <JobState> <ExitCode code:signal> <StdOut path>
# Source 1: slurmctld memory via `scontrol -o show job` (pending, running, and finished less than
#           MinJobAge ago, kept across daemon restarts through StateSaveLocation).
# Source 2: the jobcomp/filetxt log (finished jobs only; last record per job wins, because a requeue
#           writes an extra record). Used when slurmctld no longer knows the job, or with --jobcomp.
# Exit status: 0 if found, 1 if unknown to both.
set -euo pipefail
id=$1
SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/magpipe-slurm}
export SLURM_CONF=${SLURM_CONF:-$SLURM_DIR/etc/slurm.conf}
JOBCOMP=$(sed -n 's/^JobCompLoc=//p' "$SLURM_CONF")

parse='{ delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
         t = (f["ArrayJobId"] != "") ? f["ArrayJobId"] "_" f["ArrayTaskId"] : "-" }'

if [ "${2:-}" != --jobcomp ] && out=$(scontrol -o show job "$id" 2>/dev/null); then
  awk "$parse"' { print f["JobId"], t, f["JobState"], f["ExitCode"], f["StdOut"] }' <<<"$out"
  exit 0
fi
[ -r "$JOBCOMP" ] || exit 1
awk -v id="$id" "$parse"'
  f["JobId"] == id || f["ArrayJobId"] == id || t == id {
    if (!(f["JobId"] in line)) order[++n] = f["JobId"]
    line[f["JobId"]] = f["JobId"] " " t " " f["JobState"] " " f["ExitCode"] " (jobcomp: no StdOut)" }
  END { for (i = 1; i <= n; i++) print line[order[i]]; exit (n ? 0 : 1) }' "$JOBCOMP"
