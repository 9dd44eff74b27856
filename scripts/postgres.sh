# shellcheck shell=bash
# Starts a throwaway PostgreSQL server (Debian's packages, installed when
# missing) in a temporary directory on a free loopback port, with TLS on (a
# throwaway CA and a certificate for 127.0.0.1), exports
# SPRINTERS_TEST_POSTGRES_URL and SPRINTERS_TEST_POSTGRES_CA (the CA's PEM)
# and stops it when the calling shell exits.
# Sourced by scripts/test after scripts/moto.sh (it chains moto's EXIT trap).

newest_postgres_bin() {
    local d found=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && found=$d
    done
    printf '%s' "$found"
}

start_postgres() {
    local bin port dir log owner
    bin=$(newest_postgres_bin)
    if [ -z "$bin" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q postgresql
        bin=$(newest_postgres_bin)
    fi
    if ! command -v openssl >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q openssl
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dir=$(mktemp -d -t sprinters-pg.XXXXXX)
    log="$dir/server.log"
    # initdb and postgres refuse to run as root: run them as `postgres`
    # (created by the Debian package) when we are root.
    as_owner() { "$@"; }
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
        as_owner() { runuser -u postgres -- "$@"; }
    fi
    owner=$(stat -c %U "$dir")
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 || {
        echo "initdb failed ($owner); its log:" >&2
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # The store requires verified TLS, as it would in production: a CA of
    # our own and a server certificate for the loopback address it listens on.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj "/CN=Sprinters test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >"$dir/openssl.log" 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" >>"$dir/openssl.log" 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 7 -extfile "$dir/server.ext" -out "$dir/server.pem" >>"$dir/openssl.log" 2>&1 || {
        echo "making the test server's certificate failed:" >&2
        cat "$dir/openssl.log" >&2
        exit 1
    }
    chmod 600 "$dir/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/server.key" "$dir/server.pem"
    # fsync off: a test server, thrown away at the end; the tests measure
    # the store's logic, not this disk.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/server.pem -c ssl_key_file=$dir/server.key" start >/dev/null || {
        echo "PostgreSQL did not start on port $port; its log:" >&2
        cat "$log" >&2
        exit 1
    }
    PG_BIN=$bin
    PG_DIR=$dir
    local previous
    previous=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
    # shellcheck disable=SC2064
    trap "as_owner \"$PG_BIN/pg_ctl\" -D \"$PG_DIR/data\" -m immediate stop >/dev/null 2>&1 || true; rm -rf \"$PG_DIR\"; $previous" EXIT
    export SPRINTERS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export SPRINTERS_TEST_POSTGRES_CA="$dir/ca.pem"
}
