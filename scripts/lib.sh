# shellcheck shell=bash
# Shared functions for scripts/*: `source scripts/lib.sh`, don't run it.
#
# Owns: installing the project's test/demo tools (PostgreSQL 15 + wal2json from apt,
# kinesalite from npm, moto and aws_kinesis_agg from PyPI) into the system or the
# project-local .tools/, and starting/stopping throwaway servers. Must never touch a
# cluster or process it did not start, and every install step must be a no-op when the
# tool is already there.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
KINESALITE_BIN="${KINESALITE_BIN:-$TOOLS_DIR/node/node_modules/.bin/kinesalite}"
MOTO_SERVER_BIN="${MOTO_SERVER_BIN:-$TOOLS_DIR/venv/bin/moto_server}"
export REPO_ROOT PG_BIN KINESALITE_BIN MOTO_SERVER_BIN

APT_PACKAGES=(postgresql-15 postgresql-15-wal2json postgresql-client-15)
KINESALITE_SPEC="kinesalite@3"
MOTO_SPEC="moto[server]"
KINESIS_AGG_SPEC="aws_kinesis_agg"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_APT_UPDATED=0
# apt-get install PKG..., running apt-get update once per shell first.
apt_install() {
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL 15, wal2json and psql, installed only if dpkg does not know them yet.
need_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    [ -x "$PG_BIN/postgres" ] || die "$PG_BIN/postgres missing after installing ${APT_PACKAGES[*]}"
}

# kinesalite into .tools/node. npm 11 skips leveldown's install script; kinesalite only
# needs it for on-disk storage, and we run it in memory, so we check it really serves.
ensure_kinesalite() {
    command -v npm >/dev/null || die "npm not found: install Node.js 18+ with npm"
    if [ -x "$KINESALITE_BIN" ] && [ -f "$TOOLS_DIR/node/node_modules/kinesalite/package.json" ]; then
        return 0
    fi
    log "npm install $KINESALITE_SPEC into $TOOLS_DIR/node"
    mkdir -p "$TOOLS_DIR/node"
    npm install --prefix "$TOOLS_DIR/node" --no-audit --no-fund --loglevel=error "$KINESALITE_SPEC" >&2
    [ -x "$KINESALITE_BIN" ] || die "npm installed kinesalite but $KINESALITE_BIN is missing"
    local port
    port="$(free_port)"
    start_kinesalite "$port"
    stop_kinesalite
    log "kinesalite works (in-memory mode)"
}

# moto (the AWS mock server, for SSM and friends) in a venv at .tools/venv.
ensure_moto() {
    if [ -x "$MOTO_SERVER_BIN" ]; then
        return 0
    fi
    local venv="$TOOLS_DIR/venv"
    if [ ! -x "$venv/bin/pip" ]; then
        log "python3 -m venv $venv"
        rm -rf "$venv"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            # Debian ships venv support separately from python3.
            apt_install python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
        fi
    fi
    log "pip install $MOTO_SPEC into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" >&2
    [ -x "$MOTO_SERVER_BIN" ] || die "pip installed moto but $MOTO_SERVER_BIN is missing"
}

# aws_kinesis_agg (the kinesis-aggregation library for Python) in the venv at
# .tools/venv: the tests' independent KPL aggregator and de-aggregator.
ensure_kinesis_agg() {
    local py="$TOOLS_DIR/venv/bin/python"
    if [ -x "$py" ] && "$py" -c 'import aws_kinesis_agg' 2>/dev/null; then
        return 0
    fi
    ensure_moto # creates the venv
    log "pip install $KINESIS_AGG_SPEC into $TOOLS_DIR/venv"
    "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check "$KINESIS_AGG_SPEC" >&2
    "$py" -c 'import aws_kinesis_agg.aggregator, aws_kinesis_agg.deaggregator' ||
        die "pip installed $KINESIS_AGG_SPEC but python cannot import it"
}

# Prints a local TCP port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_for_port() {
    local port=$1 deadline=$((SECONDS + ${2:-30}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# Runs a PostgreSQL tool as the postgres OS user: PostgreSQL refuses to run as root.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_pg_cluster DIR PORT: a throwaway cluster with logical decoding, data in DIR/data,
# socket in DIR, log in DIR/postgres.log, trust auth on 127.0.0.1 and the socket. DIR and
# its parents must be reachable by the postgres user (e.g. a `mktemp -d` dir itself).
start_pg_cluster() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
            die "initdb failed, see $dir/initdb.log"
        as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    fi
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" -w -t 60 start >/dev/null ||
        die "postgres did not start on port $port, see $dir/postgres.log"
}

# stop_pg_cluster DIR: fast shutdown; fine if it is not running.
stop_pg_cluster() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
}

# start_kinesalite PORT: in-memory kinesalite in the background; sets KINESALITE_PID.
start_kinesalite() {
    local port=$1 logfile="${TMPDIR:-/tmp}/kinesalite-$1.log"
    "$KINESALITE_BIN" --port "$port" --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 \
        --shardLimit 1000 >"$logfile" 2>&1 &
    KINESALITE_PID=$!
    if ! wait_for_port "$port" 30; then
        kill "$KINESALITE_PID" 2>/dev/null || true
        die "kinesalite did not listen on port $port, see $logfile"
    fi
}

# stop_kinesalite: stops the kinesalite started by start_kinesalite, if any.
stop_kinesalite() {
    if [ -n "${KINESALITE_PID:-}" ]; then
        kill "$KINESALITE_PID" 2>/dev/null || true
        wait "$KINESALITE_PID" 2>/dev/null || true
        KINESALITE_PID=
    fi
}

# cargo-lambda and zig (for `scripts/build-lambda`) in the venv at .tools/venv.
ensure_cargo_lambda() {
    if [ -x "$TOOLS_DIR/venv/bin/cargo-lambda" ] && [ -x "$TOOLS_DIR/venv/bin/python-zig" ]; then
        return 0
    fi
    ensure_moto # creates the venv
    log "pip install cargo-lambda ziglang into $TOOLS_DIR/venv"
    "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check cargo-lambda ziglang >&2
    [ -x "$TOOLS_DIR/venv/bin/cargo-lambda" ] || die "pip installed cargo-lambda but $TOOLS_DIR/venv/bin/cargo-lambda is missing"
}

# The CDK app's node_modules (aws-cdk-lib, the aws-cdk CLI, cdk-nag, tsx, typescript)
# from the committed package-lock.json; reinstalled only when the lock file changed.
ensure_cdk() {
    command -v npm >/dev/null || die "npm not found: install Node.js 20+ with npm"
    local stamp="$REPO_ROOT/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ -x "$REPO_ROOT/node_modules/.bin/cdk" ] && [ "$stamp" -nt "$REPO_ROOT/package-lock.json" ]; then
        return 0
    fi
    log "npm ci (CDK app) in $REPO_ROOT"
    (cd "$REPO_ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
    [ -x "$REPO_ROOT/node_modules/.bin/cdk" ] || die "npm ci ran but node_modules/.bin/cdk is missing"
}
