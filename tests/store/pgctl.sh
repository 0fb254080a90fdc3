#!/usr/bin/env bash
# pgctl.sh - a throw-away PostgreSQL cluster for the tests that need one (CTest fixture
# "pg", registered in tests/CMakeLists.txt as store/pg_start and store/pg_stop).
#
# Usage: pgctl.sh start DIR | stop DIR | pause DIR | resume DIR
#
# start: initdb a new cluster in DIR/data (see stop_cluster) with Debian's newest /usr/lib/postgresql/*/bin,
# listening on no TCP address, only on a Unix socket in a short folder of its own
# (mktemp -d /tmp/sov-pg.XXXXXX, recorded in DIR/sockdir: socket paths are limited to
# about 107 bytes, build folders can be longer). fsync is off: the cluster is thrown away
# after the tests, so crash safety buys nothing and costs time. Writes the connection URL
# (superuser postgres, trust authentication on the socket) to DIR/url and prints it.
# A cluster left in DIR by an interrupted run is stopped and removed first.
# stop: pg_ctl stop -m fast (then SIGKILL if it will not stop), and removes the data and
# socket folders.
#
# PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the user postgres
# (or nobody) through runuser, and DIR and the socket folder belong to that user. Only
# pg_ctl -D on DIR's own cluster is ever used, so the system's clusters (Debian's "main"
# on port 5432, in /var/run/postgresql) are never touched.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|pause|resume DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
    echo "pgctl: PostgreSQL is not installed: apt-get install postgresql (make test installs it)" >&2
    exit 1
fi

# The user the server runs as, and how to run a command as that user.
if [ "$(id -u)" -eq 0 ]; then
    if id postgres >/dev/null 2>&1; then pguser=postgres; else pguser=nobody; fi
    as_pg() { runuser -u "$pguser" -- "$@"; }
else
    pguser=$(id -un)
    as_pg() { "$@"; }
fi

# The cluster lives in DIR/data, or, when the server's user cannot write DIR (a build
# folder under a private home), in the socket folder; DIR/home says which.
stop_cluster() {
    local home=$dir
    if [ -f "$dir/home" ]; then home=$(cat "$dir/home"); fi
    local data=$home/data
    if [ -f "$data/postmaster.pid" ]; then
        if ! as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            local pid
            pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                echo "pgctl: the server in $data did not stop: killing $pid" >&2
                kill -9 "$pid" 2>/dev/null || true
                sleep 1
            fi
        fi
    fi
    rm -rf "$dir/data"
    if [ -f "$dir/sockdir" ]; then
        local sock
        sock=$(cat "$dir/sockdir")
        case $sock in /tmp/sov-pg.*) rm -rf "$sock" ;; esac # only a folder we made
    fi
    rm -f "$dir/sockdir" "$dir/home" "$dir/url"
}

start_cluster() {
    stop_cluster # whatever an interrupted run left
    mkdir -p "$dir"
    local sock home=$dir
    sock=$(mktemp -d /tmp/sov-pg.XXXXXX)
    echo "$sock" >"$dir/sockdir"
    if [ "$(id -u)" -eq 0 ]; then chown "$pguser" "$dir" "$sock"; fi
    if ! as_pg test -w "$dir" 2>/dev/null; then home=$sock; fi
    echo "$home" >"$dir/home"
    local data=$home/data
    if ! as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        echo "pgctl: initdb failed in $data" >&2
        exit 1
    fi
    cat >>"$data/postgresql.conf" <<EOF
# sov test cluster (tests/store/pgctl.sh): throw-away, socket only, no crash safety
listen_addresses = ''
unix_socket_directories = '$sock'
port = 5432
shared_buffers = 16MB
max_connections = 100
EOF
    # PGCTL_DURABLE=1 (benchmarks): PostgreSQL's defaults, every commit flushed to disk
    if [ "${PGCTL_DURABLE:-0}" != 1 ]; then
        printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$data/postgresql.conf"
    fi
    if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 start >/dev/null 2>&1; then
        cat "$home/server.log" >&2 || true
        echo "pgctl: the server in $data did not start" >&2
        exit 1
    fi
    local url="postgresql:///postgres?host=$sock&port=5432&user=postgres"
    echo "$url" >"$dir/url"
    echo "$url"
}

# pause: the server goes away (immediate shutdown: connections drop as in a crash) but the
# cluster stays; resume: it comes back with the same data, socket and URL.
pause_cluster() {
    local home=$dir
    if [ -f "$dir/home" ]; then home=$(cat "$dir/home"); fi
    as_pg "$bindir/pg_ctl" -D "$home/data" -m immediate -w -t 30 stop >/dev/null
}

resume_cluster() {
    local home=$dir
    if [ -f "$dir/home" ]; then home=$(cat "$dir/home"); fi
    as_pg "$bindir/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t 60 start >/dev/null
}

case $cmd in
start) start_cluster ;;
stop) stop_cluster ;;
pause) pause_cluster ;;
resume) resume_cluster ;;
*) usage ;;
esac
