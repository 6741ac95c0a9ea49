#!/usr/bin/env bash
# Start, stop or inspect the project's own PostgreSQL and Redis, bound to loopback,
# with their data under .local/ (git-ignored). Used by `make services|stop|run|test`.
#
# DATABASE_URL / REDIS_URL, when set by the caller, mean "use that server": the matching
# local service is then neither installed nor started (the Makefile passes USE_LOCAL_*).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
PG_PORT=${LOCAL_PG_PORT:-54329}
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
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $home/run -c max_connections=200" \
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
  stop)
    pg_stop
    redis_stop
    ;;
  browser) browser ;;
  pg-home) pg_home ;;
  apt-wait) apt_wait_for_locks ;;
  *) echo "usage: $0 start|stop|browser|pg-home|apt-wait" >&2; exit 2 ;;
esac
