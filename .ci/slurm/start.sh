#!/usr/bin/env bash
# start.sh: install, configure and start a single-node Slurm "cluster" on localhost.
# Idempotent: safe to re-run (e.g. after a machine restart). Needs root; does not need systemd.
# Debian 12 packages: slurmctld slurmd slurm-client munge (Slurm 22.05.8, MUNGE 0.5.15).
#
# Environment knobs:
#   SLURM_DIR     where config/state/logs/pids live           (default ${TMPDIR:-/tmp}/magpipe-slurm)
#   SLURM_CPUS    advertise this many CPUs instead of the real count (uses
#                 SlurmdParameters=config_overrides; lets >nproc 1-CPU jobs run at once)
#   WAIT_TIMEOUT  seconds to wait for the node to become usable (default 60)
#   SLURM_EXTRA_CONF  extra slurm.conf lines, e.g. "SchedulerParameters=batch_sched_delay=0"
#   GHOST_JOBS    requeue (default) | cancel | keep: what to do with jobs that the saved state
#                 says are RUNNING but whose processes died with the machine (see step 6)
#   PROCTRACK     pgid (default) | linuxproc | cgroup. How slurmstepd finds a job's processes to kill
#                 them. linuxproc leaks `cmd &` children that outlive the batch script; pgid kills
#                 those but not setsid'd ones; cgroup (cgroup v1 only in Slurm 22.05 without systemd)
#                 kills everything. All three tested on this VM.
#   LINK_ETC=1    also symlink /etc/slurm/slurm.conf -> $SLURM_DIR/etc/slurm.conf so that
#                 clients work without SLURM_CONF (default 0: callers must export SLURM_CONF)
# On success prints "export SLURM_CONF=..." on stdout (use: eval "$(start.sh)").
set -euo pipefail

SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/magpipe-slurm}
SLURM_CPUS=${SLURM_CPUS:-}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
LINK_ETC=${LINK_ETC:-0}
# Back-to-back submissions start in about 1 s instead of 3 (see SLURM.md).
SLURM_EXTRA_CONF=${SLURM_EXTRA_CONF:-SchedulerParameters=batch_sched_delay=0}
GHOST_JOBS=${GHOST_JOBS:-requeue}
PROCTRACK=${PROCTRACK:-pgid}
T_START=$(date +%s)
CONF=$SLURM_DIR/etc/slurm.conf
export SLURM_CONF=$CONF

log() { echo "[start-slurm $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

proc_alive() {  # PID NAME: PID is a live (non-zombie) process whose comm is NAME
  local st
  [ -n "$1" ] && [ "$(cat /proc/"$1"/comm 2>/dev/null)" = "$2" ] || return 1
  # PID 1 here (process_api) reaps orphans lazily (~2 s): a dead daemon lingers as a zombie
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_alive() { proc_alive "$(cat "$2" 2>/dev/null)" "$1"; }  # NAME PIDFILE

# ---------------------------------------------------------------- 1. packages
need=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: 8 packages / ~13 MB instead of 43 packages (hdf5, rocm-smi, ...)
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- 2. munge
if [ ! -s /etc/munge/munge.key ]; then          # munge's postinst normally creates it
  log "creating munge key"
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge  # systemd's RuntimeDirectory= normally does this
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
mkdir -p "$SLURM_DIR"/{etc,state/ctld,state/d,log,run}

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running (reusing it)"
else
  log "starting munged"
  rm -f "$SLURM_DIR/run/munged.pid"
  # --force: start even if a stale socket/pid file was left behind by an unclean stop
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munged did not come up (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$SLURM_DIR/run/munged.pid"   # marks "started by us" for stop.sh
fi

# ---------------------------------------------------------------- 3. slurm.conf
H=$(hostname -s)
if [ -n "$SLURM_CPUS" ]; then
  MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  NODE="NodeName=$H CPUs=$SLURM_CPUS"
  EXTRA="SlurmdParameters=config_overrides"
else
  # "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  read -r -a hw < <(slurmd -C | head -n1)
  NODE=""; MEM=0
  for kv in "${hw[@]}"; do
    case $kv in RealMemory=*) MEM=${kv#RealMemory=} ;; *) NODE+="$kv " ;; esac
  done
  NODE=${NODE% }
  EXTRA=""
fi
MEM=$(( MEM * 9 / 10 ))   # under-declare so small reported-memory changes never make the node INVALID
case $PROCTRACK in
  pgid|linuxproc) ;;
  cgroup)
    [ -d /sys/fs/cgroup/freezer ] || die "PROCTRACK=cgroup needs cgroup v1 controllers (Slurm 22.05 cgroup/v2 wants systemd)"
    printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n' > "$SLURM_DIR/etc/cgroup.conf" ;;
  *) die "PROCTRACK must be pgid, linuxproc or cgroup" ;;
esac

cat > "$CONF.new" <<EOF
# generated by start.sh; single node, no accounting daemon (slurmdbd), no systemd
ClusterName=localci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$SLURM_DIR/state/ctld
SlurmdSpoolDir=$SLURM_DIR/state/d
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.txt
# keep finished jobs visible to squeue/scontrol for 1 day (default is 300 s)
MinJobAge=86400
$EXTRA
$SLURM_EXTRA_CONF
$NODE NodeAddr=127.0.0.1 RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

conf_changed=0
if ! cmp -s "$CONF.new" "$CONF"; then mv "$CONF.new" "$CONF"; conf_changed=1; else rm -f "$CONF.new"; fi
if [ "$LINK_ETC" = 1 ]; then mkdir -p /etc/slurm; ln -sfn "$CONF" /etc/slurm/slurm.conf; fi

# ---------------------------------------------------------------- 4. daemons
started_slurmd=0
stop_daemon() {  # NAME PIDFILE
  local pid; pid=$(cat "$2")
  log "stopping $1 (pid $pid) because slurm.conf changed"
  kill "$pid"
  for _ in $(seq 1 100); do proc_alive "$pid" "$1" || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
if [ "$conf_changed" = 1 ]; then
  pid_alive slurmd "$SLURM_DIR/run/slurmd.pid" && stop_daemon slurmd "$SLURM_DIR/run/slurmd.pid"
  pid_alive slurmctld "$SLURM_DIR/run/slurmctld.pid" && stop_daemon slurmctld "$SLURM_DIR/run/slurmctld.pid"
fi

if pid_alive slurmctld "$SLURM_DIR/run/slurmctld.pid"; then
  log "slurmctld already running"
else
  log "starting slurmctld"
  slurmctld -f "$CONF"        # daemonizes; keeps job state (and job-id counter) from StateSaveLocation
fi
for _ in $(seq 1 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
scontrol ping >/dev/null 2>&1 || { tail -n 30 "$SLURM_DIR/log/slurmctld.log" >&2; die "slurmctld not responding"; }

if pid_alive slurmd "$SLURM_DIR/run/slurmd.pid"; then
  log "slurmd already running"
else
  log "starting slurmd"
  slurmd -f "$CONF" -N "$H"   # -N: do not depend on gethostname() matching NodeName
  started_slurmd=1
fi

# ---------------------------------------------------------------- 5. wait for the node
deadline=$(( $(date +%s) + WAIT_TIMEOUT )); resumed=0
while :; do
  st=$(scontrol -o show node "$H" 2>/dev/null | sed -n 's/.* State=\([^ ]*\).*/\1/p')
  case $st in
    IDLE|MIXED|ALLOCATED) break ;;     # no +DRAIN/+NOT_RESPONDING/... suffix: usable
    *DOWN*|*DRAIN*|*FAIL*)
      if [ $resumed = 0 ]; then log "node state $st, resuming"; scontrol update NodeName="$H" State=RESUME || true; resumed=1; fi ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 20 "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log" >&2
    die "node $H not usable after ${WAIT_TIMEOUT}s (state '$st')"
  fi
  sleep 0.2
done
log "node $H is $st"

# ---------------------------------------------------------------- 6. ghost jobs
# After a restart under running jobs (reboot, kill -9), the saved slurmctld state can list jobs as
# RUNNING although their processes are gone. Unless the kernel boot time changed, Slurm 22.05 did
# not clean them up (still RUNNING after 9 min when measured), and they hold their CPUs. Requeue
# them, as Slurm itself does after a real node reboot (JobRequeue=1), and make them eligible at once
# (the default requeue delay is ~120 s). --no-requeue jobs get cancelled instead.
if [ "$started_slurmd" = 1 ] && [ "$GHOST_JOBS" != keep ]; then
  while read -r j start; do
    [ -n "$j" ] || continue
    # only jobs started before this script ran; a job just launched may not have its processes yet
    [ "$(date -d "$start" +%s 2>/dev/null || echo "$T_START")" -lt "$T_START" ] || continue
    scontrol listpids "$j" 2>/dev/null | awk 'NR>1' | grep -q . && continue   # has live processes
    if [ "$GHOST_JOBS" = requeue ] && scontrol requeue "$j" 2>/dev/null; then
      scontrol update JobId="$j" StartTime=now || true
      log "ghost job $j (no processes left after restart): requeued"
    else
      scancel "$j" || true
      log "ghost job $j (no processes left after restart): cancelled"
    fi
  done < <(squeue -h -t RUNNING,COMPLETING,SUSPENDED -w "$H" -O JobID:20,StartTime:30 2>/dev/null)
fi
echo "export SLURM_CONF=$CONF"
