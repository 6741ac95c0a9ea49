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

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian package(s) $*: install them (sudo apt-get install $*) and re-run"
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  [ -n "$(pg_bindir)" ] || apt_install postgresql
  local bin data
  bin=$(pg_bindir)
  data="$LOCAL/pg/data"
  mkdir -p "$LOCAL/pg/run"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$LOCAL/pg"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initdb $data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$LOCAL/pg/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $LOCAL/pg/run -c max_connections=200" \
      start >/dev/null; then
      tail -n 5 "$LOCAL/pg/server.log" >&2
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
  local bin
  bin=$(pg_bindir)
  if [ -n "$bin" ] && [ -f "$LOCAL/pg/data/PG_VERSION" ]; then
    as_pg "$bin/pg_ctl" -D "$LOCAL/pg/data" -m fast stop >/dev/null 2>&1 && log "PostgreSQL stopped" || true
  fi
}

redis_start() {
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
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
  *) echo "usage: $0 start|stop|browser" >&2; exit 2 ;;
esac
