#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests of the `postgres` sink
# (operators/tests/postgres_sink.rs) and prints its connection URL on
# stdout (the only thing printed there), e.g.
#
#   postgresql://postgres@127.0.0.1:54329/postgres
#
# - Listens on 127.0.0.1 only, port $WEIR_TEST_POSTGRES_PORT (default
#   54329), trust authentication, fsync off: for tests, never for data.
# - Data directory: $WEIR_TEST_POSTGRES_DIR (default
#   ${TMPDIR:-/tmp}/weir-test-postgres-$PORT); its server log is `log` in
#   there.
# - Idempotent: a cluster already running from that directory is reused;
#   concurrent calls are serialised with a lock file.
# - PostgreSQL refuses to run as root: as root the cluster belongs to the
#   `postgres` system user (created by Debian's package) and the URL's user
#   is `postgres`; otherwise it belongs to, and the URL names, the current
#   user.
# - WEIR_TEST_POSTGRES_SSL=1: the cluster takes TLS connections only
#   (`ssl = on`, `hostssl` lines in pg_hba.conf), with a certificate for
#   127.0.0.1 and localhost signed by a throwaway CA that the first start
#   makes with the `openssl` tool: `ca.crt` in the data directory is what
#   clients trust (tests/tls.rs). Give such a cluster its own port and
#   directory.
# - Binaries: `pg_config --bindir`, then the newest
#   /usr/lib/postgresql/*/bin, then PATH. If none is found it installs
#   Debian's `postgresql` package (apt-get, with sudo when not root).
#
# Stop it with: pg_ctl stop -D DIR (as the cluster's user).
set -euo pipefail

PORT="${WEIR_TEST_POSTGRES_PORT:-54329}"
DIR="${WEIR_TEST_POSTGRES_DIR:-${TMPDIR:-/tmp}/weir-test-postgres-$PORT}"
LOCK="${TMPDIR:-/tmp}/weir-test-postgres-$PORT.lock"

log() { echo "start-postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && echo "$dir"
    done | sort -V | tail -n 1
}

bindir() {
    local dir=""
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        [ -x "$dir/initdb" ] || dir=""
    fi
    [ -n "$dir" ] || dir="$(find_bindir)"
    if [ -z "$dir" ] && command -v initdb >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    echo "$dir"
}

BIN="$(bindir)"
if [ -z "$BIN" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL is not installed and apt-get is not available; install PostgreSQL (initdb, pg_ctl) by hand."
        exit 1
    fi
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "not root and sudo is not available"; exit 1; }
        SUDO=(sudo)
    fi
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    ${SUDO[@]+"${SUDO[@]}"} apt-get update >&2
    ${SUDO[@]+"${SUDO[@]}"} apt-get install -y --no-install-recommends postgresql >&2
    BIN="$(bindir)"
    [ -n "$BIN" ] || { log "installed postgresql, but found no initdb"; exit 1; }
fi

if [ "$(id -u)" -eq 0 ]; then
    OWNER=postgres
    id "$OWNER" >/dev/null 2>&1 || { log "running as root, and there is no \`postgres\` user to run the server"; exit 1; }
    as_owner() { runuser -u "$OWNER" -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi
URL="postgresql://$OWNER@127.0.0.1:$PORT/postgres"

exec 9>"$LOCK"  # the server must not inherit it (see `9>&-` below)
flock 9

if as_owner "$BIN/pg_ctl" status -D "$DIR" >/dev/null 2>&1; then
    echo "$URL"
    exit 0
fi

mkdir -p "$DIR"
[ "$(id -u)" -eq 0 ] && chown "$OWNER" "$DIR"
chmod 700 "$DIR"
if [ ! -f "$DIR/PG_VERSION" ]; then
    log "initdb $DIR"
    as_owner "$BIN/initdb" -D "$DIR" -A trust -U "$OWNER" -E UTF8 --no-sync >&2
fi
SSL_OPTIONS=""
if [ "${WEIR_TEST_POSTGRES_SSL:-}" = 1 ]; then
    if [ ! -f "$DIR/server.crt" ]; then
        log "making a throwaway CA and a server certificate in $DIR"
        work="$(mktemp -d)"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=weir test PostgreSQL CA" -keyout "$work/ca.key" -out "$work/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=127.0.0.1" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
            >"$work/ext"
        openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
            -CAcreateserial -days 3650 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null
        install -m 600 "$work/server.key" "$DIR/server.key"
        install -m 644 "$work/server.crt" "$DIR/server.crt"
        install -m 644 "$work/ca.crt" "$DIR/ca.crt"
        rm -rf "$work"
        [ "$(id -u)" -eq 0 ] && chown "$OWNER" "$DIR/server.key" "$DIR/server.crt" "$DIR/ca.crt"
        printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' >"$DIR/pg_hba.conf"
        [ "$(id -u)" -eq 0 ] && chown "$OWNER" "$DIR/pg_hba.conf"
    fi
    SSL_OPTIONS="-c ssl=on"
fi
log "starting PostgreSQL on 127.0.0.1:$PORT ($BIN)"
as_owner "$BIN/pg_ctl" start -w -t 60 -D "$DIR" -l "$DIR/log" \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off $SSL_OPTIONS" >&2 9>&- \
    || { log "PostgreSQL did not start; its log:"; tail -n 30 "$DIR/log" >&2 || true; exit 1; }
echo "$URL"
