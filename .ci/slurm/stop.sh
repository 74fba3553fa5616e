#!/usr/bin/env bash
# stop.sh: stop what start.sh started. Idempotent (no-op when nothing runs).
#   SLURM_DIR    same as for start.sh             (default ${TMPDIR:-/tmp}/magpipe-slurm)
#   CANCEL_JOBS  1 (default): scancel all jobs first so no job processes outlive slurmd
#   PURGE=1      also delete state + logs (next start gets job ids from 1 again)
# Only signals pids from our own pid files, after checking the process name.
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/magpipe-slurm}
CANCEL_JOBS=${CANCEL_JOBS:-1}
PURGE=${PURGE:-0}
export SLURM_CONF=$SLURM_DIR/etc/slurm.conf

log() { echo "[stop-slurm $(date +%T)] $*" >&2; }
proc_alive() {  # PID NAME: PID is a live (non-zombie) process whose comm is NAME
  local st
  [ -n "$1" ] && [ "$(cat /proc/"$1"/comm 2>/dev/null)" = "$2" ] || return 1
  # PID 1 here (process_api) reaps orphans lazily (~2 s): a dead daemon lingers as a zombie
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_alive() { proc_alive "$(cat "$2" 2>/dev/null)" "$1"; }  # NAME PIDFILE
stop() {  # NAME PIDFILE
  local pid
  if ! pid_alive "$1" "$2"; then log "$1 not running"; rm -f "$2"; return 0; fi
  pid=$(cat "$2"); log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do proc_alive "$pid" "$1" || { rm -f "$2"; return 0; }; sleep 0.1; done
  log "$1 (pid $pid) ignored SIGTERM for 15 s, sending SIGKILL"; kill -9 "$pid" 2>/dev/null || true
  rm -f "$2"
}

if [ "$CANCEL_JOBS" = 1 ] && pid_alive slurmctld "$SLURM_DIR/run/slurmctld.pid" \
   && pid_alive slurmd "$SLURM_DIR/run/slurmd.pid"; then
  ids=$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    log "cancelling jobs: $ids"; scancel $ids || true
    for _ in $(seq 1 150); do   # wait for slurmstepd to kill the job processes
      [ -z "$(squeue -h -t RUNNING,COMPLETING,SUSPENDED -o %A 2>/dev/null)" ] && break; sleep 0.2
    done
  fi
fi

stop slurmd "$SLURM_DIR/run/slurmd.pid"
stop slurmctld "$SLURM_DIR/run/slurmctld.pid"
# munged: only if start.sh started it (it recorded the pid); a pre-existing munged is left alone
if [ -f "$SLURM_DIR/run/munged.pid" ]; then
  if pid_alive munged "$SLURM_DIR/run/munged.pid" && cmp -s "$SLURM_DIR/run/munged.pid" /run/munge/munged.pid; then
    stop munged "$SLURM_DIR/run/munged.pid"
  else
    log "munged pid in $SLURM_DIR/run/munged.pid is stale"; rm -f "$SLURM_DIR/run/munged.pid"
  fi
fi
if [ "$PURGE" = 1 ]; then log "purging $SLURM_DIR/{state,log}"; rm -rf "$SLURM_DIR/state" "$SLURM_DIR/log"; fi
log "done"
