#!/usr/bin/env bash
# StationManager test database: PostgreSQL 17 + TimescaleDB (Apache edition)
# ============================================================================
#
# The project's tests run against a real TimescaleDB. Debian 12 (bookworm), the
# machine we develop and run CI on, has no TimescaleDB package, but Debian 13
# (trixie) ships `postgresql-17-timescaledb`, built from the Apache-2.0 licensed
# part of TimescaleDB only. This script therefore:
#
#   1. builds a minimal Debian 13 root file system with debootstrap
#      (default /opt/stationmanager-tsdb) -- no trixie package touches the host;
#   2. installs Debian's `postgresql-17` and `postgresql-17-timescaledb` in it;
#   3. creates a cluster "17/main" that listens on 127.0.0.1:5433 only, with
#      shared_preload_libraries = 'timescaledb', telemetry off, trust auth on
#      127.0.0.1 and max_connections = 200;
#   4. starts it inside the chroot.
#
# Usage (as root; `url` works as any user):
#   scripts/timescaledb.sh [setup]   everything above; idempotent: a second run only
#                                    re-checks state (and starts the server if needed)
#   scripts/timescaledb.sh start     mount /proc + /dev/shm in the chroot, start the server
#   scripts/timescaledb.sh stop      stop the server, unmount /proc + /dev/shm
#   scripts/timescaledb.sh status    cluster status and whether the port answers
#   scripts/timescaledb.sh check     SQL smoke test with the chroot's own psql
#   scripts/timescaledb.sh url       print the connection URL
#
# Environment:
#   STATIONMANAGER_TSDB_ROOT    chroot directory          (default /opt/stationmanager-tsdb)
#   STATIONMANAGER_TSDB_PORT    TCP port on 127.0.0.1     (default 5433)
#   STATIONMANAGER_TSDB_MIRROR / STATIONMANAGER_TSDB_SECURITY_MIRROR   Debian mirrors
#
# Typical test run:
#   bash scripts/timescaledb.sh setup
#   STATIONMANAGER_TEST_DATABASE_URL="$(bash scripts/timescaledb.sh url)" make test
#
# Only Debian packages from the Debian mirror are used; nothing is compiled.
# Logs of the long steps: /var/log/stationmanager-tsdb-*.log
set -Eeuo pipefail

ROOT=${STATIONMANAGER_TSDB_ROOT:-/opt/stationmanager-tsdb}
PORT=${STATIONMANAGER_TSDB_PORT:-5433}
MIRROR=${STATIONMANAGER_TSDB_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${STATIONMANAGER_TSDB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=trixie
PGVER=17
CLUSTER=main
PKGS=("postgresql-$PGVER" "postgresql-$PGVER-timescaledb")
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
LOGDIR=/var/log
DONE_MARK="$ROOT/.stationmanager-tsdb-debootstrap-done"
SELF="scripts/timescaledb.sh"

# ---------------------------------------------------------------------------
# helpers: logging and timing
# ---------------------------------------------------------------------------
log()  { printf '[tsdb %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die()  { printf '[tsdb %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }
now()  { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
# bytes received on all non-loopback interfaces (to report download sizes)
rx_bytes()  { awk -F'[: ]+' 'NR>2 && $2!="lo" {s+=$3} END{print s+0}' /proc/net/dev; }
mib_since() { awk -v a="$1" -v b="$(rx_bytes)" 'BEGIN{printf "%.1f MiB", (b-a)/1048576}'; }

trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
}

# ---------------------------------------------------------------------------
# helpers: running things inside the chroot
# ---------------------------------------------------------------------------

# Run a command inside the chroot as root, with a clean environment.
in_root() {
    chroot "$ROOT" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# Same, but as the chroot's own postgres user (numeric ids read from the chroot's
# /etc/passwd and /etc/group, since the host may have no such user).
as_postgres() {
    local uid gid groups
    uid=$(awk -F: '$1=="postgres"{print $3}' "$ROOT/etc/passwd")
    gid=$(awk -F: '$1=="postgres"{print $4}' "$ROOT/etc/passwd")
    [ -n "$uid" ] && [ -n "$gid" ] || die "no postgres user inside $ROOT"
    # primary group + supplementary groups (ssl-cert: Debian's cluster uses the snakeoil key)
    groups=$(awk -F: -v g="$gid" '$3==g || ("," $4 ",") ~ /,postgres,/ {print $3}' "$ROOT/etc/group" | sort -un | paste -sd,)
    chroot --userspec="$uid:$gid" --groups="$groups" "$ROOT" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/postgresql \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@"
}

# psql from the chroot (PostgreSQL 17 client) over TCP, so no host psql is needed.
chroot_psql() {   # chroot_psql DBNAME [psql args...]
    local db=$1; shift
    in_root psql -X -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" "$@"
}

# ---------------------------------------------------------------------------
# helpers: mounts and files
# ---------------------------------------------------------------------------
mounts_under() { findmnt -rn -o TARGET | awk -v p="$1" 'index($0, p"/")==1 || $0==p' | sort -r; }

# Unmount anything below a directory (deepest first).
umount_all_under() {
    local m
    for m in $(mounts_under "$1"); do umount "$m" || umount -l "$m"; done
}

# The server needs /proc and a POSIX shared memory directory inside the chroot.
mount_runtime() {
    mkdir -p "$ROOT/proc" "$ROOT/dev/shm"
    mountpoint -q "$ROOT/proc"    || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev/shm" || mount -t tmpfs -o mode=1777,nosuid,nodev,size=512m shm "$ROOT/dev/shm"
}

unmount_runtime() {
    if mountpoint -q "$ROOT/dev/shm"; then umount "$ROOT/dev/shm"; fi
    if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}

# debootstrap creates the basic device nodes with mknod; make sure they really are
# character devices (a bind-mount fallback, once unmounted, leaves plain files).
ensure_dev_nodes() {
    local spec name major minor
    for spec in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$spec"
        if [ ! -c "$ROOT/dev/$name" ]; then
            rm -f "$ROOT/dev/$name"
            mknod -m 0666 "$ROOT/dev/$name" c "$major" "$minor"
            log "debootstrap: recreated device node /dev/$name in the chroot"
        fi
    done
}

write_if_changed() {   # write_if_changed FILE  (content on stdin); returns 0 if changed
    local f=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
    mkdir -p "$(dirname "$f")"
    mv "$tmp" "$f"; chmod 0644 "$f"; chown --reference="$(dirname "$f")" "$f"
    return 0
}

# ---------------------------------------------------------------------------
# setup step 1: debootstrap on the host (bookworm package), then the trixie chroot
# ---------------------------------------------------------------------------

# Install debootstrap on the host if it is missing. `apt-get update` is only run
# when the package lists are empty or the first install attempt fails.
ensure_host_debootstrap() {
    command -v debootstrap >/dev/null && return 0
    local t0 logf="$LOGDIR/stationmanager-tsdb-host-apt.log"; t0=$(now)
    export DEBIAN_FRONTEND=noninteractive
    : >"$logf"
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "host: apt package lists are empty, running apt-get update"
        apt-get update >>"$logf" 2>&1 || log "host: apt-get update reported errors (continuing, see $logf)"
    fi
    log "host: installing debootstrap (Debian 12 package)"
    if ! apt-get install -y --no-install-recommends debootstrap >>"$logf" 2>&1; then
        log "host: install failed, running apt-get update and retrying"
        apt-get update >>"$logf" 2>&1 || log "host: apt-get update reported errors (continuing, see $logf)"
        apt-get install -y --no-install-recommends debootstrap >>"$logf" 2>&1 \
            || die "could not install debootstrap on the host, see $logf"
    fi
    command -v debootstrap >/dev/null || die "debootstrap still not found after installing it"
    log "host: debootstrap installed in $(took "$t0") s"
}

step_debootstrap() {
    if [ -f "$DONE_MARK" ]; then
        log "debootstrap: $ROOT already present, skipping"
        ensure_dev_nodes
        return
    fi
    ensure_host_debootstrap
    # A half-finished earlier attempt: remove it safely (never cross into mounts).
    if [ -e "$ROOT" ]; then
        log "debootstrap: removing incomplete $ROOT"
        umount_all_under "$ROOT"
        [ -z "$(mounts_under "$ROOT")" ] || die "something is still mounted under $ROOT"
        rm -rf --one-file-system "$ROOT"
    fi
    local t0 rx0 logf="$LOGDIR/stationmanager-tsdb-debootstrap.log"; t0=$(now); rx0=$(rx_bytes)
    log "debootstrap: --variant=minbase $SUITE $ROOT $MIRROR (log: $logf)"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$logf" 2>&1 \
        || { umount_all_under "$ROOT"; die "debootstrap failed, see $logf"; }
    umount_all_under "$ROOT"
    ensure_dev_nodes
    local debs
    debs=$(find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -printf '%s\n' 2>/dev/null \
        | awk '{s+=$1; n++} END{printf "%d debs, %.1f MiB", n, s/1048576}')
    log "debootstrap: done in $(took "$t0") s; network rx $(mib_since "$rx0"); fetched $debs;" \
        "chroot size $(du -sh --one-file-system "$ROOT" | cut -f1)"
    # the .debs are not needed any more
    in_root apt-get clean
    touch "$DONE_MARK"
}

# ---------------------------------------------------------------------------
# setup step 2: PostgreSQL 17 + TimescaleDB inside the chroot
# ---------------------------------------------------------------------------

# Give the chroot's postgres user the host's postgres uid/gid when the host has one
# and the ids are free inside the chroot, so host tools (ps, ls) show the server's
# processes and files as "postgres". Cosmetic only; must happen before the package
# creates the user.
align_postgres_ids() {
    grep -q '^postgres:' "$ROOT/etc/passwd" && return 0
    local huid hgid
    huid=$(getent passwd postgres | cut -d: -f3) || return 0
    hgid=$(getent passwd postgres | cut -d: -f4)
    [ -n "$huid" ] || return 0
    if awk -F: -v u="$huid" '$3==u{f=1} END{exit !f}' "$ROOT/etc/passwd" ||
       awk -F: -v g="$hgid" '$3==g{f=1} END{exit !f}' "$ROOT/etc/group"; then
        log "apt: postgres ids $huid:$hgid taken inside the chroot; letting the package pick its own"
        return 0
    fi
    in_root groupadd --system --gid "$hgid" postgres
    in_root useradd --system --uid "$huid" --gid postgres --home-dir /var/lib/postgresql \
        --no-create-home --shell /bin/bash --comment "PostgreSQL administrator" postgres
    log "apt: created postgres user $huid:$hgid inside the chroot (same ids as on the host)"
}

step_apt() {
    # apt sources: trixie + updates + security
    write_if_changed "$ROOT/etc/apt/sources.list" <<EOF || true
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    # never start services from package scripts inside the chroot
    write_if_changed "$ROOT/usr/sbin/policy-rc.d" <<'EOF' || true
#!/bin/sh
# no service starts inside this chroot; the server is started by scripts/timescaledb.sh
exit 101
EOF
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
    # do not let the postgresql-17 postinst create a default cluster on port 5432
    write_if_changed "$ROOT/etc/postgresql-common/createcluster.d/50-no-main.conf" <<'EOF' || true
create_main_cluster = false
EOF

    align_postgres_ids

    local missing=() p
    for p in "${PKGS[@]}"; do
        [ "$(in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt: ${PKGS[*]} already installed, skipping"
        return
    fi
    mount_runtime
    local t0 rx0 logf="$LOGDIR/stationmanager-tsdb-apt.log"; t0=$(now); rx0=$(rx_bytes)
    log "apt: installing ${missing[*]} inside the chroot (log: $logf)"
    : >"$logf"
    # finish an install that an earlier, interrupted run left half-configured
    in_root dpkg --configure -a >>"$logf" 2>&1 || true
    in_root apt-get update -q >>"$logf" 2>&1 \
        || die "apt-get update inside the chroot failed, see $logf"
    in_root apt-get install -y --no-install-recommends "${missing[@]}" >>"$logf" 2>&1 \
        || die "apt-get install inside the chroot failed, see $logf"
    log "apt: done in $(took "$t0") s; network rx $(mib_since "$rx0");" \
        "$(grep -E '^Need to get|^After this operation' "$logf" | tr '\n' ' ')"
    log "apt: installed $(in_root dpkg-query -W -f='${Package} ${Version}, ' "${PKGS[@]}" | sed 's/, $//')"
    in_root apt-get clean
}

# ---------------------------------------------------------------------------
# setup step 3: the cluster and its configuration
# ---------------------------------------------------------------------------
CONFIG_CHANGED=0

step_cluster() {
    local conf="$ROOT/etc/postgresql/$PGVER/$CLUSTER" changed=0
    if [ ! -f "$conf/postgresql.conf" ]; then
        mount_runtime
        local t0; t0=$(now)
        in_root pg_createcluster "$PGVER" "$CLUSTER" --port "$PORT" --locale C.UTF-8 \
            -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
        log "cluster: pg_createcluster $PGVER $CLUSTER --port $PORT done in $(took "$t0") s"
        changed=1
    fi
    # conf.d/ is read after postgresql.conf, so these settings win
    write_if_changed "$conf/conf.d/90-stationmanager.conf" <<EOF && changed=1 || true
# managed by scripts/timescaledb.sh (StationManager test database)
listen_addresses = '127.0.0.1'
port = $PORT
max_connections = 200
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
# /dev/shm inside the chroot is a private tmpfs mounted by scripts/timescaledb.sh
dynamic_shared_memory_type = posix
EOF
    # loopback-only test server: trust on 127.0.0.1, peer on the chroot's unix socket
    write_if_changed "$conf/pg_hba.conf" <<'EOF' && changed=1 || true
# managed by scripts/timescaledb.sh (loopback-only StationManager test server)
local   all   all                 peer
host    all   all   127.0.0.1/32  trust
EOF
    [ "$changed" = 1 ] && log "cluster: configuration written" || log "cluster: configuration unchanged"
    CONFIG_CHANGED=$changed
}

# ---------------------------------------------------------------------------
# server control
# ---------------------------------------------------------------------------
have_cluster() { [ -f "$ROOT/etc/postgresql/$PGVER/$CLUSTER/postgresql.conf" ]; }
is_running()   { as_postgres pg_ctlcluster "$PGVER" "$CLUSTER" status >/dev/null 2>&1; }
port_open()    { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

do_start() {
    need_root
    have_cluster || die "no cluster yet; run '$SELF setup' first"
    mount_runtime
    local t0; t0=$(now)
    if is_running; then
        if [ "$CONFIG_CHANGED" = 1 ]; then
            log "start: configuration changed, restarting"
            as_postgres pg_ctlcluster "$PGVER" "$CLUSTER" restart -m fast
            log "start: restarted in $(took "$t0") s"
        else
            log "start: already running"
        fi
    else
        port_open && die "port $PORT on 127.0.0.1 is already taken by another process"
        as_postgres pg_ctlcluster "$PGVER" "$CLUSTER" start
        log "start: started in $(took "$t0") s"
    fi
    local _
    for _ in $(seq 1 30); do
        in_root pg_isready -q -h 127.0.0.1 -p "$PORT" && break
        sleep 1
    done
    in_root pg_isready -q -h 127.0.0.1 -p "$PORT" || die "server does not answer on 127.0.0.1:$PORT"
    log "start: accepting connections at $URL"
}

do_stop() {
    need_root
    if have_cluster && is_running; then
        local t0; t0=$(now)
        as_postgres pg_ctlcluster "$PGVER" "$CLUSTER" stop -m fast
        log "stop: stopped in $(took "$t0") s"
    else
        log "stop: not running"
    fi
    unmount_runtime
}

do_status() {
    need_root
    [ -f "$DONE_MARK" ] && have_cluster || { log "status: not set up (root $ROOT)"; return 0; }
    in_root pg_lsclusters || true
    if port_open; then log "status: 127.0.0.1:$PORT accepts connections"; else log "status: 127.0.0.1:$PORT closed"; fi
}

# ---------------------------------------------------------------------------
# check: smoke test with the chroot's psql (the host may have no psql at all)
# ---------------------------------------------------------------------------
# Uses a scratch database "stationmanager_tsdb_check": creates the extension, shows
# versions and the license, makes a hypertable and queries it with time_bucket, and
# reports whether continuous aggregates are available (they are not in the Apache
# edition; that is reported, not treated as a failure). Everything is rolled back
# except the scratch database itself.
do_check() {
    need_root
    have_cluster || die "no cluster yet; run '$SELF setup' first"
    port_open || die "nothing listens on 127.0.0.1:$PORT; run '$SELF start'"
    local t0 db=stationmanager_tsdb_check; t0=$(now)
    if [ "$(chroot_psql postgres -At -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
        chroot_psql postgres -q -c "CREATE DATABASE $db"
    fi
    chroot_psql "$db" -v ON_ERROR_STOP=1 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT version();
SELECT extversion AS timescaledb, current_setting('timescaledb.license') AS license,
       current_setting('max_connections') AS max_connections
  FROM pg_extension WHERE extname = 'timescaledb';
BEGIN;
CREATE TABLE smoke_check(time timestamptz NOT NULL, v float8);
SELECT create_hypertable('smoke_check', by_range('time')) AS hypertable;
INSERT INTO smoke_check SELECT now() - i * INTERVAL '1 minute', i FROM generate_series(1, 120) i;
SELECT time_bucket('1 hour', time) AS bucket, count(*) FROM smoke_check GROUP BY 1 ORDER BY 1;
SET client_min_messages = notice;
DO $$
BEGIN
    EXECUTE 'CREATE MATERIALIZED VIEW smoke_check_hourly WITH (timescaledb.continuous) AS '
         || 'SELECT time_bucket(''1 hour'', time) AS bucket, avg(v) FROM smoke_check GROUP BY 1 WITH NO DATA';
    RAISE NOTICE 'continuous aggregates: available';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'continuous aggregates: NOT available (%: %)', SQLSTATE, SQLERRM;
END $$;
ROLLBACK;
SQL
    log "check: OK in $(took "$t0") s"
}

do_setup() {
    need_root
    local t0; t0=$(now)
    step_debootstrap
    step_apt
    step_cluster
    do_start
    log "setup: total $(took "$t0") s; URL: $URL"
}

case "${1:-setup}" in
    setup)  do_setup ;;
    start)  do_start ;;
    stop)   do_stop ;;
    status) do_status ;;
    check)  do_check ;;
    url)    printf '%s\n' "$URL" ;;
    -h|--help|help) sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0" ;;
    *) echo "usage: $0 [setup|start|stop|status|check|url]" >&2; exit 2 ;;
esac
