#!/usr/bin/env bash
# Start, stop or inspect the project's own PostgreSQL and Redis, bound to loopback,
# with their data under .local/ (git-ignored). Used by `make services|stop|run|test`.
# `replica` also starts a streaming read replica of that PostgreSQL (`make test` does, for
# tests/config/test_replica.py); `stop` stops it too.
#
# DATABASE_URL / REDIS_URL, when set by the caller, mean "use that server": the matching
# local service is then neither installed nor started (the Makefile passes USE_LOCAL_*).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
PG_PORT=${LOCAL_PG_PORT:-54329}
PG_REPLICA_PORT=${LOCAL_PG_REPLICA_PORT:-$((PG_PORT + 1))}
# A standby refuses to start with fewer connections than its primary allows.
PG_MAX_CONNECTIONS=200
# The role the replica streams as: it may replicate, and is granted nothing on any table.
PG_REPLICATION_ROLE=credits_replication
REDIS_PORT=${LOCAL_REDIS_PORT:-63799}
USE_LOCAL_PG=${USE_LOCAL_PG:-1}
USE_LOCAL_REDIS=${USE_LOCAL_REDIS:-1}

log() { printf '[services] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
# apt and dpkg take POSIX locks on these files. Another apt run (unattended upgrades, a second
# checkout installing at the same moment) holds them for minutes: wait for it, a bounded time,
# instead of failing at once. Overridable for the tests of this wait.
read -r -a APT_LOCK_FILES <<<"${APT_LOCK_FILES:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}"
APT_LOCK_WAIT=${APT_LOCK_WAIT:-600}

# "PID (command)" of a process holding one of the lock files, or nothing. /proc/locks names
# the holder's pid and the locked file's inode.
apt_lock_holder() {
  local file inode pid
  for file in "${APT_LOCK_FILES[@]}"; do
    [ -e "$file" ] || continue
    inode=$(stat -c %i "$file")
    # Lines with "->" are waiters, not holders.
    pid=$(awk -v inode="$inode" '$2 != "->" { split($6, id, ":"); if (id[3] == inode) { print $5; exit } }' /proc/locks)
    if [ -n "$pid" ]; then
      printf '%s (%s)\n' "$pid" "$(tr '\0\n' '  ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80 || echo gone)"
      return
    fi
  done
}

apt_wait_for_locks() {
  local waited=0 holder
  while holder=$(apt_lock_holder) && [ -n "$holder" ]; do
    if [ "$waited" -ge "$APT_LOCK_WAIT" ]; then
      log "the package manager is still busy after ${APT_LOCK_WAIT}s: process $holder holds its lock."
      log "Let it finish (or stop it), then run make again; APT_LOCK_WAIT sets the wait in seconds."
      exit 1
    fi
    if [ $((waited % 10)) = 0 ]; then
      log "waiting for the package manager: process $holder holds its lock (${waited}s of ${APT_LOCK_WAIT}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian package(s) $*: install them (sudo apt-get install $*) and re-run"
    exit 1
  fi
  apt_wait_for_locks
  # An install interrupted earlier (Ctrl-C, a lost session) leaves dpkg half-way: finish it
  # first, or every later apt-get refuses to run.
  if [ -n "$(dpkg --audit 2>/dev/null)" ]; then
    log "finishing an interrupted package installation (dpkg --configure -a)"
    DEBIAN_FRONTEND=noninteractive dpkg --configure -a
  fi
  # The lock may be taken again between the check and apt-get: apt then waits by itself.
  local apt=(apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_WAIT" -qq)
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    "${apt[@]}" update
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null
}

# --- PostgreSQL --------------------------------------------------------------------------------
pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
# It starts from /: the caller's folder may be one postgres cannot enter (root's home).
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where the cluster lives. The server runs as `postgres`, who must reach its data directory:
# under .local/ when it can, else (a checkout in root's mode-700 home, say) in a folder of the
# postgres user's own home, named after this checkout's path so that two checkouts never share
# a cluster. Nobody's permissions are loosened to get there.
pg_home() {
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
    echo "$LOCAL/pg"
    return
  fi
  local home name
  home=$(getent passwd postgres | cut -d: -f6)
  name="$(basename "$ROOT" | tr -c 'A-Za-z0-9._\n-' '_')-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  echo "${home:-/var/lib/postgresql}/credits-admin-center/$name"
}

pg_start() {
  [ -n "$(pg_bindir)" ] || apt_install postgresql
  local bin data home
  bin=$(pg_bindir)
  home=$(pg_home)
  data="$home/data"
  mkdir -p "$home/run"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$home"; fi
  if [ "$home" != "$LOCAL/pg" ]; then
    log "PostgreSQL's data is in $home (the postgres user cannot reach $ROOT)"
  else
    log "PostgreSQL's data is in $home"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initdb $data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $home/run -c max_connections=$PG_MAX_CONNECTIONS" \
      start >/dev/null; then
      tail -n 5 "$home/server.log" >&2
      log "PostgreSQL did not start (port $PG_PORT taken? set LOCAL_PG_PORT)"
      exit 1
    fi
  fi
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='credits'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE credits LOGIN CREATEDB"
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='credits'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE credits OWNER credits"
  fi
  pg_allow_replication "${psql[@]}"
}

# Let a streaming replica connect from loopback, as a role that can do nothing else.
# Idempotent and without a restart, so a cluster initialised before the replica existed gets
# it on its next start: a role is created and, if missing, a pg_hba.conf line added and
# reloaded (initdb --auth=trust already allows replication from 127.0.0.1 to every role).
pg_allow_replication() {
  local psql=("$@") hba
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_REPLICATION_ROLE'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE $PG_REPLICATION_ROLE LOGIN REPLICATION"
  fi
  hba=$("${psql[@]}" -c "SHOW hba_file")
  if ! as_pg grep -Eq "^[[:space:]]*host[[:space:]]+replication[[:space:]]+(all|$PG_REPLICATION_ROLE)[[:space:]]+127\.0\.0\.1/32[[:space:]]" "$hba"; then
    log "allowing replication by $PG_REPLICATION_ROLE from 127.0.0.1 in $hba"
    printf 'host replication %s 127.0.0.1/32 trust\n' "$PG_REPLICATION_ROLE" | as_pg tee -a "$hba" >/dev/null
    "${psql[@]}" -c "SELECT pg_reload_conf()" >/dev/null
  fi
}

# The replica: a physical copy of the whole cluster (every database, test databases
# included) made by pg_basebackup -R, then kept up to date by streaming, read-only. Its data
# is beside the primary's, in $(pg_home)/replica. No replication slot: a replica that was
# stopped never makes the primary keep WAL; one that fell too far behind is copied again.
pg_replica_start() {
  local bin home data
  bin=$(pg_bindir)
  # PostgreSQL's defaults (wal_level=replica, max_wal_senders=10) allow it; changing either
  # needs a restart of the primary, which this script never does by itself.
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtA)
  if [ "$("${psql[@]}" -c "SELECT current_setting('wal_level') <> 'minimal' AND current_setting('max_wal_senders')::int > 0")" != t ]; then
    log "the PostgreSQL on 127.0.0.1:$PG_PORT cannot stream to a replica (wal_level=minimal or"
    log "max_wal_senders=0): set wal_level=replica and max_wal_senders=10, then restart it"
    exit 1
  fi
  home="$(pg_home)/replica"
  data="$home/data"
  mkdir -p "$home/run"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$home"; fi
  [ -f "$data/PG_VERSION" ] || pg_replica_clone "$bin" "$data"
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL replica already running on 127.0.0.1:$PG_REPLICA_PORT"
  elif "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_REPLICA_PORT" -t 2 || [ $? = 1 ]; then
    log "port $PG_REPLICA_PORT is taken by another server: stop it, or set LOCAL_PG_REPLICA_PORT"
    exit 1
  elif ! pg_replica_run "$bin" "$home"; then
    log "the replica did not start; copying it again"
    pg_replica_clone "$bin" "$data"
    pg_replica_run "$bin" "$home" || pg_replica_failed "$home"
  fi
  # A replica stopped for a while may need WAL the primary has recycled since (or belong to
  # a cluster that was initialised again): it never catches up, so copy it again, once.
  if ! pg_replica_streaming; then
    log "the replica does not stream from the primary; copying it again"
    pg_replica_clone "$bin" "$data"
    { pg_replica_run "$bin" "$home" && pg_replica_streaming; } || pg_replica_failed "$home"
  fi
}

# A fresh copy of the primary, replacing (and first stopping) any earlier one.
pg_replica_clone() {
  local bin=$1 data=$2
  case "$data" in */replica/data) ;; *) log "refusing to replace $data"; exit 1 ;; esac
  if [ -f "$data/PG_VERSION" ]; then
    as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  fi
  as_pg rm -rf "$data"
  log "copying the primary into $data (pg_basebackup -R)"
  if ! as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_REPLICATION_ROLE" \
    -D "$data" -R -X stream -c fast --no-password; then
    log "pg_basebackup failed"
    exit 1
  fi
}

pg_replica_run() {
  local bin=$1 home=$2
  log "starting the PostgreSQL replica on 127.0.0.1:$PG_REPLICA_PORT"
  as_pg "$bin/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_REPLICA_PORT -k $home/run -c max_connections=$PG_MAX_CONNECTIONS -c hot_standby=on -c hot_standby_feedback=on" \
    start >/dev/null
}

# Up to 20 s for its WAL receiver to say it is streaming.
pg_replica_streaming() {
  local status
  for _ in $(seq 100); do
    status=$("$(pg_bindir)/psql" -h 127.0.0.1 -p "$PG_REPLICA_PORT" -U postgres -qtA \
      -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
    [ "$status" = streaming ] && return 0
    sleep 0.2
  done
  return 1
}

pg_replica_failed() {
  tail -n 5 "$1/server.log" >&2 || true
  log "the PostgreSQL replica did not start streaming (see $1/server.log)"
  exit 1
}

pg_replica_stop() {
  local bin data
  bin=$(pg_bindir)
  data="$(pg_home)/replica/data"
  if [ -n "$bin" ] && [ -f "$data/PG_VERSION" ]; then
    if as_pg "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1; then
      log "PostgreSQL replica stopped (its data stays in $data)"
    fi
  fi
}

pg_stop() {
  local bin home
  bin=$(pg_bindir)
  home=$(pg_home)
  if [ -n "$bin" ] && [ -f "$home/data/PG_VERSION" ]; then
    if as_pg "$bin/pg_ctl" -D "$home/data" -m fast stop >/dev/null 2>&1; then
      log "PostgreSQL stopped (its data stays in $home/data)"
    fi
  fi
}

redis_start() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    apt_install redis-server redis-tools
  mkdir -p "$LOCAL/redis"
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    # Reuse only our own Redis: another checkout's (or a stray one) would share keys.
    local dir
    dir=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get dir | tail -n 1)
    if [ "$dir" != "$LOCAL/redis" ]; then
      log "port $REDIS_PORT is taken by another Redis (data in $dir): stop it, or set LOCAL_REDIS_PORT"
      exit 1
    fi
    log "Redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LOCAL/redis" \
    --daemonize yes --pidfile "$LOCAL/redis/redis.pid" --logfile "$LOCAL/redis/redis.log" \
    --save 60 1 --appendonly no --stop-writes-on-bgsave-error no
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
  log "Redis did not answer; see $LOCAL/redis/redis.log"
  exit 1
}

redis_stop() {
  if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    log "Redis stopped"
  fi
}

browser() {
  # Debian's Chromium: Playwright's own browser download cannot work on this kind of machine.
  command -v chromium >/dev/null || apt_install chromium
}

case "${1:-start}" in
  start)
    if [ "$USE_LOCAL_PG" = 1 ]; then pg_start; fi
    if [ "$USE_LOCAL_REDIS" = 1 ]; then redis_start; fi
    ;;
  replica)
    if [ "$USE_LOCAL_PG" = 1 ]; then
      pg_start
      pg_replica_start
    else
      log "DATABASE_URL names another server: no local replica (DATABASE_REPLICA_URL names yours)"
    fi
    ;;
  stop)
    pg_replica_stop
    pg_stop
    redis_stop
    ;;
  browser) browser ;;
  pg-home) pg_home ;;
  apt-wait) apt_wait_for_locks ;;
  *) echo "usage: $0 start|replica|stop|browser|pg-home|apt-wait" >&2; exit 2 ;;
esac
