#!/usr/bin/env bash
# myroute benchmark: one MariaDB on loopback, HAProxy (TCP mode) and myroute
# in front of it; every workload runs against the three endpoints in turn
# (direct, haproxy, myroute, direct, ...) for BENCH_ROUNDS rounds. Prints
# medians and ratios, and writes bench/results.md and bench/results.svg.
#
# TLS: the same MariaDB also serves TLS (a CA and certificates made with
# openssl in the temporary directory), and two more myroute processes listen:
# one with TLS on the client leg only, one with TLS on both legs. point_select
# (4 threads), churn and bulk also run against direct-tls, myroute-tls and
# myroute-tls2 in the same rounds, after the three plaintext endpoints. Every
# TLS run is checked to have really used TLS (MariaDB's Ssl_accepts, myroute's
# TLS login counter); one that did not stops the benchmark.
#
# Environment:
#   BENCH_TIME=6         seconds per timed run
#   BENCH_ROUNDS=5       rounds (at least 3 for results.md / results.svg)
#   BENCH_QUICK=1        development: 3 s runs, 1 round, 500 idle connections;
#                        writes its report to bench/out/ only
#   BENCH_IDLE_CONNS=5000  idle connections held through each proxy
#   BENCH_STARTUP_RUNS=20  start-up time samples
#   BENCH_HAPROXY_THREADS= HAProxy nbthread (empty: HAProxy's default, one
#                        thread per CPU)
#   BENCH_BUILD=1        build myroute (release and `make static`) first
#   BENCH_OUT=bench/out  raw logs, configs and samples of the last run
#   MYROUTE_BIN          myroute binary (default target/release/myroute)
#   BENCH_TLS_WORKLOADS="ps4 churn bulk"  workloads also run over TLS (empty:
#                        no TLS endpoints)
#   BENCH_TLS_ROUNDS=3   rounds (the first ones) that include the TLS
#                        endpoints (at most BENCH_ROUNDS; keeps the run near
#                        20 minutes)
#   BENCH_RESUME_PROBE=100  connections, one after the other, per round through
#                        a myroute whose server leg passes a relay that
#                        reads the TLS hellos (session resumption toward
#                        MariaDB)
#   BENCH_STALL_LIMIT=   seconds after which a sysbench run counts as stalled
#                        (default BENCH_TIME + 20): it is stopped, the
#                        proxy's sockets are recorded, the stall is reported
#                        in results.md and the run goes on without its sample
#
# Needs root to install missing Debian packages (mariadb-server,
# mariadb-client, sysbench, haproxy, python3, openssl) and to start mariadbd as the
# mysql user. Everything it starts is stopped, and its temporary directory
# removed, on exit or interrupt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

quick="${BENCH_QUICK:-0}"
if [ "$quick" = 1 ]; then
    bench_time="${BENCH_TIME:-3}"
    rounds="${BENCH_ROUNDS:-1}"
    idle_conns="${BENCH_IDLE_CONNS:-500}"
    startup_runs="${BENCH_STARTUP_RUNS:-5}"
else
    bench_time="${BENCH_TIME:-6}"
    rounds="${BENCH_ROUNDS:-5}"
    idle_conns="${BENCH_IDLE_CONNS:-5000}"
    startup_runs="${BENCH_STARTUP_RUNS:-20}"
fi
haproxy_threads="${BENCH_HAPROXY_THREADS:-}"
build="${BENCH_BUILD:-1}"
static_ok=0
minimal_ok=0
[ "$build" = 1 ] || { static_ok=1; minimal_ok=1; }
out="${BENCH_OUT:-$here/out}"
myroute_bin="${MYROUTE_BIN:-$repo/target/release/myroute}"
python="${PYTHON:-python3}"
stall_limit="${BENCH_STALL_LIMIT:-$((bench_time + 20))}"
resume_probe="${BENCH_RESUME_PROBE:-100}"
tls_rounds="${BENCH_TLS_ROUNDS:-3}"
[ "$tls_rounds" -le "$rounds" ] || tls_rounds="$rounds"
stalls=0

# Workload shape (the same for every endpoint).
tables=4
table_size=10000
bulk_rows=200
bulk_row_bytes=1000000
db_user=sbtest
db_pass=sbtest-bench-password
endpoints=(direct haproxy myroute)
tls_endpoints=(direct-tls myroute-tls myroute-tls2)
read -r -a tls_workloads <<<"${BENCH_TLS_WORKLOADS-ps4 churn bulk}"

# --------------------------------------------------------------------------
# Logging, failure, cleanup

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() {
    local msg="$1" file="${2:-}"
    printf '[bench] FAILED: %s\n' "$msg" >&2
    if [ -n "$file" ] && [ -s "$file" ]; then
        printf -- '---- last lines of %s ----\n' "$file" >&2
        tail -n 40 "$file" >&2
        printf -- '----\n' >&2
    fi
    exit 1
}

tmp=""
pids=()
# Waits up to 10 s for PID (already sent SIGTERM) to exit, then kills it.
await_exit() {
    local pid="$1" _
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        await_exit "$pid"
    done
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        if [ -f "$tmp/db/run/error.log" ] && [ -d "$out" ]; then
            cp "$tmp/db/run/error.log" "$out/mariadb-error.log" 2>/dev/null || true
        fi
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

forget_pid() {
    local gone="$1" keep=() pid
    for pid in "${pids[@]}"; do
        [ "$pid" = "$gone" ] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    await_exit "$1"
    forget_pid "$1"
}

# --------------------------------------------------------------------------
# Dependencies

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb-install-db >/dev/null 2>&1 || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v "$python" >/dev/null 2>&1 || { python=python3; need+=(python3); }
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to install: ${need[*]}"
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing ${need[*]}"
    apt_log="$(mktemp -t myroute-bench-apt.XXXXXX)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } \
           >"$apt_log" 2>&1; then
        die "apt-get install ${need[*]}" "$apt_log"
    fi
    rm -f "$apt_log"
fi
export PATH="$PATH:/usr/sbin:/sbin"
mariadbd_bin="$(command -v mariadbd)"
haproxy_bin="$(command -v haproxy)"

# A proxy holds two descriptors per connection; HAProxy's maxconn 8000 needs
# about 16,000, MariaDB with 6,000 connections about as many.
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ] || [ "$hard" -ge 20000 ]; then
    ulimit -n 20000
else
    ulimit -n "$hard"
    log "warning: descriptor hard limit is $hard (< 20000); the idle test may fail"
fi

# The output directory is replaced on every run: refuse to empty a directory
# that a previous run did not create.
if [ -e "$out" ] && [ ! -e "$out/.bench-out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    die "BENCH_OUT=$out exists and was not made by bench/run.sh; pick another directory"
fi
rm -rf "$out"
mkdir -p "$out/raw"
touch "$out/.bench-out"
samples="$out/samples.tsv"
meta="$out/meta.txt"
: >"$samples"
: >"$meta"
meta_set() { printf '%s=%s\n' "$1" "$2" >>"$meta"; }

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "load average at start: $load_start"

# --------------------------------------------------------------------------
# Build

if [ "$build" = 1 ]; then
    log "building myroute (cargo build --release --locked)"
    (cd "$repo" && cargo build --release --locked) >"$out/build.log" 2>&1 ||
        die "cargo build --release" "$out/build.log"
    log "building the static binary (make static)"
    if make -C "$repo" static >"$out/static.log" 2>&1; then
        static_ok=1
    else
        log "warning: make static failed; binary size not measured (see $out/static.log)"
    fi
    log "building the static binary without TLS (make minimal)"
    if make -C "$repo" minimal >"$out/minimal.log" 2>&1; then
        minimal_ok=1
    else
        log "warning: make minimal failed; its size not measured (see $out/minimal.log)"
    fi
fi
[ -x "$myroute_bin" ] || die "myroute binary not found: $myroute_bin (build it, or set MYROUTE_BIN)"

# --------------------------------------------------------------------------
# Ports: free ones below the ephemeral range.

used_ports=" "
port_free() {
    local p="$1"
    case "$used_ports" in *" $p "*) return 1 ;; esac
    [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]
}
pick_port() {
    local p=$((20000 + RANDOM % 12000)) _
    for _ in $(seq 1 500); do
        if port_free "$p"; then
            used_ports+="$p "
            echo "$p"
            return 0
        fi
        p=$((p + 1))
        [ "$p" -lt 32000 ] || p=20000
    done
    die "no free port found"
}
db_port="$(pick_port)"
hap_port="$(pick_port)"
my_port="$(pick_port)"
probe_port="$(pick_port)"
my_tls_port="$(pick_port)"
my_tls2_port="$(pick_port)"
metrics_tls_port="$(pick_port)"
metrics_tls2_port="$(pick_port)"
my_resume_port="$(pick_port)"
metrics_resume_port="$(pick_port)"
spy_port="$(pick_port)"
reuse_port_port="$(pick_port)"

# Waits until something listens on PORT (without connecting to it), or fails
# with the tail of LOG if PID exits or the deadline passes.
wait_listen() {
    local port="$1" pid="$2" logf="$3" what="$4" deadline=$((SECONDS + ${5:-30}))
    while [ -z "$(ss -Hltn "( sport = :$port )" 2>/dev/null)" ]; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before listening on $port" "$logf"
        [ "$SECONDS" -lt "$deadline" ] || die "$what not listening on $port after ${5:-30} s" "$logf"
        sleep 0.05
    done
}

# CPU accounting, to estimate how much of the machine other processes took
# during the timed rounds: all CPUs' busy jiffies from /proc/stat,
# minus what this script's children (sysbench, helpers) and servers used.
cpu_busy_total() {   # user+nice+system+irq+softirq, all fields
    awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $2 + $3 + $4 + $7 + $8, t}' /proc/stat
}
children_ticks() {   # waited-for children of this shell: call `times >"$tmp/times.txt"` first,
    awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        n = split($0, f, " "); s = 0
        for (i = 1; i <= n; i++) { split(f[i], p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
        printf "%d", s * hz }' "$tmp/times.txt"
}
daemon_ticks() {
    local pid t=0
    for pid in "$@"; do t=$((t + $(cpu_ticks "$pid"))); done
    echo "$t"
}
# Time the proxy's threads spent runnable but waiting for a CPU (ns).
rq_wait_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%d", s}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk_tck="$(getconf CLK_TCK)"

tmp="$(mktemp -d /tmp/myroute-bench.XXXXXX)"
chmod 755 "$tmp"

# --------------------------------------------------------------------------
# Certificates: a CA, one server certificate for 127.0.0.1 (MariaDB and
# myroute's client leg both present it) and a client certificate, all ECDSA
# P-256. sysbench 1.0's --mysql-ssl=on loads client-key.pem, client-cert.pem
# and cacert.pem from its working directory: $tls_dir/sysbench holds them.

tls_dir="$tmp/tls"
mkdir -p "$tls_dir/sysbench"
(
    cd "$tls_dir"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca-key.pem -out ca.pem -days 30 \
        -subj "/CN=myroute bench CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req "${ec[@]}" -keyout server-key.pem -out server.csr -subj "/CN=127.0.0.1"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -days 30 -extfile server.ext -out server-cert.pem
    openssl req "${ec[@]}" -keyout client-key.pem -out client.csr -subj "/CN=$db_user"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth" >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -days 30 -extfile client.ext -out client-cert.pem
    openssl verify -CAfile ca.pem server-cert.pem client-cert.pem
    cp ca.pem sysbench/cacert.pem
    cp client-cert.pem client-key.pem sysbench/
    # MariaDB's own copy of the key, readable by the mysql user only.
    cp server-key.pem db-key.pem
    chmod 600 ./*key.pem sysbench/client-key.pem
) >"$out/tls-setup.log" 2>&1 || die "making the TLS certificates" "$out/tls-setup.log"
[ "$(id -u)" -ne 0 ] || chown mysql "$tls_dir/db-key.pem"

# --------------------------------------------------------------------------
# MariaDB

log "MariaDB on 127.0.0.1:$db_port (datadir in $tmp)"
mkdir -p "$tmp/db/run"
as_mysql=()
if [ "$(id -u)" -eq 0 ]; then
    as_mysql=(--user=mysql)
    chown mysql "$tmp/db/run"
fi
mariadb-install-db --no-defaults --datadir="$tmp/db/data" "${as_mysql[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >"$out/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db" "$out/mariadb-install.log"
db_sock="$tmp/db/run/mysqld.sock"
db_err="$tmp/db/run/error.log"
max_conn=$((idle_conns + 1000))
"$mariadbd_bin" --no-defaults "${as_mysql[@]}" \
    --datadir="$tmp/db/data" --port="$db_port" --bind-address=127.0.0.1 \
    --socket="$db_sock" --pid-file="$tmp/db/run/mysqld.pid" --log-error="$db_err" \
    --skip-name-resolve --max-connections="$max_conn" --max-connect-errors=1000000 \
    --open-files-limit=20000 --back-log=1024 \
    --query-cache-type=DEMAND --query-cache-size=768M --query-cache-limit=300M \
    --innodb-buffer-pool-size=256M --innodb-log-file-size=64M \
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 \
    --performance-schema=OFF --max-allowed-packet=64M \
    --ssl-cert="$tls_dir/server-cert.pem" --ssl-key="$tls_dir/db-key.pem" \
    --ssl-ca="$tls_dir/ca.pem" >"$out/mariadbd.out" 2>&1 &
db_pid=$!
pids+=("$db_pid")
wait_listen "$db_port" "$db_pid" "$db_err" mariadbd 60

# --skip-ssl: the client would otherwise use TLS on the socket too, which
# MariaDB's Ssl_* counters (read around the TLS runs) would count.
sql() { mariadb --no-defaults --skip-ssl -S "$db_sock" -uroot -N -B "$@"; }
sql -e "CREATE DATABASE sbtest;
        CREATE USER '$db_user'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('$db_pass');
        GRANT ALL ON sbtest.* TO '$db_user'@'%';" >"$out/setup.log" 2>&1 ||
    die "creating the sysbench user" "$out/setup.log"
read -r got_max got_files got_qc <<<"$(sql -e 'SELECT @@max_connections, @@open_files_limit, @@query_cache_type')"
log "MariaDB max_connections=$got_max open_files_limit=$got_files query_cache_type=$got_qc"
[ "$got_max" -ge "$max_conn" ] || die "MariaDB lowered max_connections to $got_max (open_files_limit $got_files)" "$db_err"
[ "$got_qc" = DEMAND ] || die "query_cache_type is $got_qc, not DEMAND" "$db_err"
db_hash="$(sql -e "SELECT authentication_string FROM mysql.user WHERE user='$db_user'")"
[[ "$db_hash" =~ ^\*[0-9A-F]{40}$ ]] || die "unexpected password hash for $db_user: $db_hash"
db_have_ssl="$(sql -e 'SELECT @@have_ssl')"
[ "$db_have_ssl" = YES ] || die "MariaDB has no TLS (have_ssl=$db_have_ssl)" "$db_err"
sql -e "SHOW GLOBAL STATUS LIKE 'Ssl%'; SHOW GLOBAL VARIABLES LIKE '%ssl%'; SHOW GLOBAL VARIABLES LIKE 'tls%'" \
    >"$out/mariadb-ssl-start.txt" 2>&1 || true
# MariaDB's TLS counters, in this order (see tls_ssl_counters in the report).
ssl_counters="Ssl_accepts Ssl_finished_accepts Ssl_session_cache_hits Ssl_session_cache_misses"
ssl_status() {
    local names
    names="$(printf "'%s'," $ssl_counters)"
    sql -e "SHOW GLOBAL STATUS WHERE Variable_name IN (${names%,})" |
        awk -v want="$ssl_counters" '{v[$1] = $2} END {n = split(want, w, " "); for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), (w[i] in v ? v[w[i]] : 0); print ""}'
}


sb_common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user="$db_user"
           --mysql-password="$db_pass" --mysql-db=sbtest)
sb_oltp=(--tables="$tables" --table-size="$table_size" --db-ps-mode=disable)

log "sysbench prepare: $tables tables x $table_size rows"
sysbench oltp_read_only "${sb_common[@]}" --mysql-port="$db_port" "${sb_oltp[@]}" \
    --threads="$tables" prepare >"$out/prepare.log" 2>&1 || die "sysbench prepare" "$out/prepare.log"

# --------------------------------------------------------------------------
# HAProxy: TCP mode, timeouts and buffers at their documented defaults.

hap_cfg="$out/haproxy.cfg"
{
    echo "global"
    echo "    maxconn 8000"
    [ -z "$haproxy_threads" ] || echo "    nbthread $haproxy_threads"
    echo ""
    echo "defaults"
    echo "    mode tcp"
    echo "    maxconn 8000"
    echo "    # no timeouts set: HAProxy's documented default is none"
    echo ""
    echo "listen mariadb"
    echo "    bind 127.0.0.1:$hap_port"
    echo "    server db1 127.0.0.1:$db_port"
} >"$hap_cfg"
"$haproxy_bin" -c -f "$hap_cfg" >"$out/haproxy-check.log" 2>&1 || die "haproxy -c" "$out/haproxy-check.log"
log "HAProxy on 127.0.0.1:$hap_port"
"$haproxy_bin" -db -f "$hap_cfg" >"$out/haproxy.log" 2>&1 &
hap_pid=$!
pids+=("$hap_pid")
wait_listen "$hap_port" "$hap_pid" "$out/haproxy.log" haproxy

# --------------------------------------------------------------------------
# myroute

write_myroute_cfg() {   # FILE PORT [extra line]   (mode 600: it holds a password hash)
    : >"$1"
    chmod 600 "$1"
    {
        echo "listen = 127.0.0.1:$2"
        echo "buffer_size = 16384"
        echo "connect_timeout = 5s"
        echo "pool.main.servers = 127.0.0.1:$db_port"
        echo "user.$db_user.password = $db_hash"
        echo "user.$db_user.pool = main"
        [ -z "${my_extra:-}" ] || echo "$my_extra"
        [ -z "${3:-}" ] || echo "$3"
    } >>"$1"
}
# Same connection limit as HAProxy's maxconn, where myroute has the key
# (its default, 4096, is below the idle test's 5000).
my_extra=""
write_myroute_cfg "$out/myroute-probe.conf" "$my_port" "max_clients = 8000"
if "$myroute_bin" --check -c "$out/myroute-probe.conf" >/dev/null 2>&1; then
    my_extra="max_clients = 8000"
fi
rm -f "$out/myroute-probe.conf"
my_cfg="$out/myroute.conf"
write_myroute_cfg "$my_cfg" "$my_port"
"$myroute_bin" --check -c "$my_cfg" >"$out/myroute-check.log" 2>&1 ||
    die "myroute --check -c $my_cfg" "$out/myroute-check.log"
log "myroute on 127.0.0.1:$my_port"
RUST_LOG=warn "$myroute_bin" -c "$my_cfg" >"$out/myroute.log" 2>&1 &
my_pid=$!
pids+=("$my_pid")
wait_listen "$my_port" "$my_pid" "$out/myroute.log" myroute
sleep 0.5
meta_set rss_zero_kib "$(rss_kib "$my_pid")"

# TLS: myroute-tls requires TLS from clients (the bench CA's certificate for
# 127.0.0.1) and talks plaintext to MariaDB; myroute-tls2 also uses TLS toward
# MariaDB, checking its certificate against the CA. Each has a /metrics
# responder whose TLS and plaintext login counters prove what the runs used.
tls_client_keys="tls = required
tls.cert = $tls_dir/server-cert.pem
tls.key = $tls_dir/server-key.pem"
tls_server_keys="pool.main.tls = verify_ca
pool.main.tls_ca = $tls_dir/ca.pem"
my_tls_pid="" my_tls2_pid=""
if [ "${#tls_workloads[@]}" -gt 0 ]; then
    write_myroute_cfg "$out/myroute-tls.conf" "$my_tls_port" \
        "$tls_client_keys
metrics.listen = 127.0.0.1:$metrics_tls_port"
    write_myroute_cfg "$out/myroute-tls2.conf" "$my_tls2_port" \
        "$tls_client_keys
$tls_server_keys
metrics.listen = 127.0.0.1:$metrics_tls2_port"
    for v in tls tls2; do
        "$myroute_bin" --check -c "$out/myroute-$v.conf" >"$out/myroute-$v-check.log" 2>&1 ||
            die "myroute --check -c $out/myroute-$v.conf" "$out/myroute-$v-check.log"
    done
    log "myroute with TLS toward clients on 127.0.0.1:$my_tls_port, on both legs on 127.0.0.1:$my_tls2_port"
    RUST_LOG=warn "$myroute_bin" -c "$out/myroute-tls.conf" >"$out/myroute-tls.log" 2>&1 &
    my_tls_pid=$!
    pids+=("$my_tls_pid")
    RUST_LOG=warn "$myroute_bin" -c "$out/myroute-tls2.conf" >"$out/myroute-tls2.log" 2>&1 &
    my_tls2_pid=$!
    pids+=("$my_tls2_pid")
    wait_listen "$my_tls_port" "$my_tls_pid" "$out/myroute-tls.log" "myroute (TLS client leg)"
    wait_listen "$my_tls2_port" "$my_tls2_pid" "$out/myroute-tls2.log" "myroute (TLS both legs)"
    wait_listen "$metrics_tls_port" "$my_tls_pid" "$out/myroute-tls.log" "myroute (TLS client leg) metrics"
    wait_listen "$metrics_tls2_port" "$my_tls2_pid" "$out/myroute-tls2.log" "myroute (TLS both legs) metrics"

    # myroute-resume: myroute-tls2's configuration, with its server leg through
    # a relay that reads each TLS ClientHello and ServerHello (helper.py
    # tlsspy), to see whether myroute's handshakes toward MariaDB resume.
    spy_log="$out/raw/tls-resumption.txt"
    "$python" "$here/helper.py" tlsspy --listen "$spy_port" --to "$db_port" --log "$spy_log" \
        >"$out/tlsspy.log" 2>&1 &
    spy_pid=$!
    pids+=("$spy_pid")
    wait_listen "$spy_port" "$spy_pid" "$out/tlsspy.log" "helper.py tlsspy"
    write_myroute_cfg "$out/myroute-resume.conf" "$my_resume_port" \
        "$tls_client_keys
$tls_server_keys
metrics.listen = 127.0.0.1:$metrics_resume_port"
    sed -i "s/^pool.main.servers = .*/pool.main.servers = 127.0.0.1:$spy_port/" "$out/myroute-resume.conf"
    RUST_LOG=warn "$myroute_bin" -c "$out/myroute-resume.conf" >"$out/myroute-resume.log" 2>&1 &
    my_resume_pid=$!
    pids+=("$my_resume_pid")
    wait_listen "$my_resume_port" "$my_resume_pid" "$out/myroute-resume.log" "myroute (resumption probe)"
    wait_listen "$metrics_resume_port" "$my_resume_pid" "$out/myroute-resume.log" "myroute (resumption probe) metrics"
fi

port_of() {
    case "$1" in
        direct | direct-tls) echo "$db_port" ;;
        haproxy) echo "$hap_port" ;;
        myroute) echo "$my_port" ;;
        myroute-tls) echo "$my_tls_port" ;;
        myroute-tls2) echo "$my_tls2_port" ;;
        myroute-resume) echo "$my_resume_port" ;;
    esac
}
pid_of() {
    case "$1" in
        haproxy) echo "$hap_pid" ;;
        myroute) echo "$my_pid" ;;
        myroute-tls) echo "$my_tls_pid" ;;
        myroute-tls2) echo "$my_tls2_pid" ;;
        *) echo "" ;;
    esac
}
metrics_port_of() {
    case "$1" in
        myroute-tls) echo "$metrics_tls_port" ;;
        myroute-tls2) echo "$metrics_tls2_port" ;;
        myroute-resume) echo "$metrics_resume_port" ;;
        *) echo "" ;;
    esac
}
is_tls() { case "$1" in *-tls | *-tls2 | myroute-resume) return 0 ;; *) return 1 ;; esac; }
# "tls plain" client logins so far, from myroute's /metrics.
tls_logins() {
    "$python" "$here/helper.py" metrics --port "$(metrics_port_of "$1")" ||
        die "reading /metrics of $1" "$out/$1.log"
}

# Does this MariaDB resume TLS sessions, and which counters show it? Two
# openssl s_client connections (STARTTLS for MySQL), the second resuming the
# first's session, with the global counters read around them.
if [ "${#tls_workloads[@]}" -gt 0 ]; then
    read -r -a c0 <<<"$(ssl_status)"
    sess="$tmp/s_client.session"
    sc() { sleep 1 | openssl s_client -connect "127.0.0.1:$db_port" -starttls mysql \
        -CAfile "$tls_dir/ca.pem" "$@" 2>&1 | grep -E '^(New|Reused),' | head -n 1; }
    first="$(sc -sess_out "$sess")" || true
    second="$(sc -sess_in "$sess")" || true
    read -r -a c1 <<<"$(ssl_status)"
    note="openssl s_client to MariaDB, then again with the first session: \"${first:-?}\", then \"${second:-?}\"; MariaDB's counters over both: Ssl_finished_accepts +$((c1[1] - c0[1])), Ssl_session_cache_hits +$((c1[2] - c0[2])), Ssl_session_cache_misses +$((c1[3] - c0[3])) ($(sql -e "SHOW GLOBAL STATUS LIKE 'Ssl_session_cache_mode'" | awk '{print $1 " " $2}'))."
    log "TLS resumption check: $note"
    meta_set tls_resumption_note "$note MariaDB's global cache counters do not count resumption by session ticket, which TLS 1.3 uses, and neither does its per-session \`Ssl_sessions_reused\` (it read 0 on connections that Python's \`ssl\` reported as resumed). The resumed share is therefore counted on the wire: a fourth myroute (myroute-resume, myroute-tls2's configuration) reaches MariaDB through \`helper.py tlsspy\`, a relay that reads each TLS ClientHello (does it offer a session: TLS 1.3 \`pre_shared_key\`) and ServerHello (does the server accept it); after each myroute-tls2 churn run, $resume_probe connections one after the other go through it (its health checks' handshakes count too)."
fi

# Every endpoint over TLS once with the mariadb client: the session's cipher
# as the server sees it (direct) or as myroute reports it.
for ep in "${tls_endpoints[@]}"; do
    [ "${#tls_workloads[@]}" -gt 0 ] || break
    got="$(cd "$tls_dir/sysbench" && mariadb --no-defaults -h 127.0.0.1 -P "$(port_of "$ep")" \
        -u"$db_user" -p"$db_pass" --ssl --ssl-ca=cacert.pem --ssl-verify-server-cert -N -B \
        -e "SHOW STATUS LIKE 'Ssl_%'" 2>&1)" || die "mariadb client over TLS to $ep: $got"
    echo "$ep: $(echo "$got" | tr '\n\t' ' =')" >>"$out/tls-check.txt"
done
sample() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$samples"; }

# --------------------------------------------------------------------------
# Idle scale: N logged-in idle connections through each proxy.

# myroute-tls: every connection does an SSLRequest and a TLS handshake (the
# bench CA verified) before its login.
idle_eps=(haproxy myroute)
[ "${#tls_workloads[@]}" -eq 0 ] || idle_eps+=(myroute-tls)
for ep in "${idle_eps[@]}"; do
    log "idle: $idle_conns logged-in connections through $ep"
    idle_tls=()
    if is_tls "$ep"; then
        idle_tls=(--tls --ca "$tls_dir/ca.pem")
        read -r l0 p0 <<<"$(tls_logins "$ep")"
    fi
    res="$("$python" "$here/helper.py" idle --port "$(port_of "$ep")" --user "$db_user" \
        --password "$db_pass" --db sbtest --count "$idle_conns" --pid "$(pid_of "$ep")" \
        "${idle_tls[@]}" 2>"$out/raw/idle-$ep.log")" || die "idle connections through $ep" "$out/raw/idle-$ep.log"
    read -r before after <<<"$res"
    if is_tls "$ep"; then
        read -r l1 p1 <<<"$(tls_logins "$ep")"
        [ $((l1 - l0)) -ge "$idle_conns" ] && [ "$p1" = "$p0" ] ||
            die "idle through $ep: $((l1 - l0)) TLS and $((p1 - p0)) plaintext logins for $idle_conns TLS connections" "$out/raw/idle-$ep.log"
    fi
    per=$(awk -v a="$after" -v b="$before" -v n="$idle_conns" 'BEGIN {printf "%.3f", (a - b) / n}')
    log "idle: $ep RSS $before KiB -> $after KiB: $per KiB per connection"
    echo "$ep $before $after" >>"$out/raw/idle.txt"
    sample 1 idle_kib "$ep" "$per"
    # Let the backend finish closing before the next proxy's turn.
    sleep 2
done

# --------------------------------------------------------------------------
# Timed workloads

# run_sysbench ROUND NAME ENDPOINT SYSBENCH-ARGS...  -> sets sb_file, sb_cpu_s,
# and for TLS endpoints sb_ssl0/sb_ssl1 (ssl_status before and after)
run_sysbench() {
    local round="$1" name="$2" ep="$3"
    shift 3
    local port pid t0=0 t1=0 w0=0 w1=0 dir=. ssl=() l0=0 p0=0 l1=0 p1=0 arg conns=1
    port="$(port_of "$ep")"
    pid="$(pid_of "$ep")"
    sb_file="$out/raw/r$round-$name-$ep.txt"
    if is_tls "$ep"; then
        # sysbench 1.0.20 has no option for the files: it passes client-key.pem,
        # client-cert.pem and cacert.pem, relative to its working directory, to
        # mysql_ssl_set(); with the CA set, libmariadb verifies the server's chain.
        dir="$tls_dir/sysbench"
        ssl=(--mysql-ssl=on)
        read -r -a sb_ssl0 <<<"$(ssl_status)"
        [ "$ep" = direct-tls ] || read -r l0 p0 <<<"$(tls_logins "$ep")"
    fi
    if [ -n "$pid" ]; then t0="$(cpu_ticks "$pid")"; w0="$(rq_wait_ns "$pid")"; fi
    local rc=0 sbp wd marker="$tmp/stalled"
    rm -f "$marker"
    (cd "$dir" && exec sysbench "$@" "${sb_common[@]}" "${ssl[@]}" --mysql-port="$port" run) \
        >"$sb_file" 2>&1 &
    sbp=$!
    # Watchdog: a run that outlives its time by far is a stall. Record what
    # the proxy's sockets look like while it is stuck, then stop the run.
    (
        for _ in $(seq 1 $((stall_limit * 2))); do
            sleep 0.5
            kill -0 "$sbp" 2>/dev/null || exit 0
        done
        {
            echo "== $(date -u '+%H:%M:%S') stall: $name against $ep (round $round), stopped after $stall_limit s"
            [ -z "$pid" ] || ss -tnpi 2>/dev/null | grep -A1 "pid=$pid," || true
            echo "-- MariaDB error log, last lines:"
            grep -v 'Access denied' "$db_err" | tail -n 3
        } >>"$out/stalls.txt"
        touch "$marker"
        kill -TERM "$sbp" 2>/dev/null
        sleep 5
        kill -KILL "$sbp" 2>/dev/null
        exit 0
    ) &
    wd=$!
    wait "$sbp" || rc=$?
    wait "$wd" || true
    if [ -e "$marker" ]; then
        # Go on without this sample.
        stalls=$((stalls + 1))
        meta_set "stall_$stalls" "$name against $ep, round $round: no progress, stopped after $stall_limit s (sockets in stalls.txt)"
        log "STALL: sysbench $name against $ep (round $round) still running after $stall_limit s; stopped, sample dropped"
        sb_qps=nan sb_p95=nan sb_events=0 sb_total=0 sb_queries=0
        [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || die "$ep exited during $name (round $round)" "$out/$ep.log"
        return 1
    fi
    [ "$rc" = 0 ] || die "sysbench $name against $ep (round $round)" "$sb_file"
    if [ -n "$pid" ]; then
        kill -0 "$pid" 2>/dev/null || die "$ep exited during $name (round $round)" "$out/$ep.log"
        t1="$(cpu_ticks "$pid")"
        w1="$(rq_wait_ns "$pid")"
    fi
    sb_cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$clk_tck" 'BEGIN {printf "%.4f", (b - a) / hz}')
    sb_wait_ns=$((w1 - w0))
    local parsed
    parsed="$("$python" "$here/helper.py" sysbench "$sb_file")" || die "parsing $sb_file" "$sb_file"
    read -r sb_qps sb_p95 sb_events sb_total sb_queries <<<"$parsed"
    [ "$sb_events" -gt 0 ] || die "sysbench $name against $ep (round $round) ran no event" "$sb_file"
    if is_tls "$ep"; then
        # Connections the run must have made over TLS: one per thread, or one
        # per event for churn.
        for arg in "$@"; do
            case "$arg" in --threads=*) conns="${arg#--threads=}" ;; esac
        done
        case "$name" in churn*) conns="$sb_events" ;; esac
        read -r -a sb_ssl1 <<<"$(ssl_status)"
        local srv=$((sb_ssl1[1] - sb_ssl0[1]))
        echo "r$round $name $ep: connections $conns; server $ssl_counters: ${sb_ssl0[*]} -> ${sb_ssl1[*]}" >>"$out/raw/tls-checks.txt"
        if [ "$ep" != direct-tls ]; then
            read -r l1 p1 <<<"$(tls_logins "$ep")"
            echo "r$round $name $ep: myroute client logins tls $l0 -> $l1, plain $p0 -> $p1" >>"$out/raw/tls-checks.txt"
            [ $((l1 - l0)) -ge "$conns" ] && [ "$p1" = "$p0" ] ||
                die "$name against $ep (round $round) was not TLS on the client leg: $((l1 - l0)) TLS and $((p1 - p0)) plaintext logins for $conns connections" "$sb_file"
        fi
        # Toward MariaDB: TLS for direct-tls and myroute-tls2 (finished server
        # handshakes; myroute's health checks only add to them).
        if [ "$ep" != myroute-tls ] && [ "$ep" != myroute-resume ] && [ "$srv" -lt "$conns" ]; then
            die "$name against $ep (round $round) was not TLS toward MariaDB: $srv finished TLS handshakes for $conns connections" "$sb_file"
        fi
    fi
}

qcache_hits() { sql -e "SHOW GLOBAL STATUS LIKE 'Qcache_hits'" | awk '{print $2}'; }

bulk_args=("$here/bulk.lua" --threads=1 --bulk-rows="$bulk_rows" --bulk-row-bytes="$bulk_row_bytes")

workload() {   # ROUND NAME ENDPOINT
    local round="$1" name="$2" ep="$3"
    case "$name" in
        ps4 | ps32)
            local threads="${name#ps}"
            run_sysbench "$round" "$name" "$ep" oltp_point_select "${sb_oltp[@]}" \
                --threads="$threads" --time="$bench_time" || return 0
            sample "$round" "${name}_qps" "$ep" "$sb_qps"
            sample "$round" "${name}_p95" "$ep" "$sb_p95"
            local pid_cpu=""
            if [ -n "$(pid_of "$ep")" ]; then
                pid_cpu=1
                sample "$round" "${name}_cpu" "$ep" \
                    "$(awk -v c="$sb_cpu_s" -v q="$sb_queries" 'BEGIN {printf "%.6f", c / q * 100000}')"
                sample "$round" "${name}_rqwait" "$ep" \
                    "$(awk -v w="$sb_wait_ns" -v q="$sb_queries" 'BEGIN {printf "%.3f", w / q / 1000}')"
            fi
            log "round $round $name $ep: $(printf '%.0f' "$sb_qps") QPS, p95 $(printf '%.2f' "$sb_p95") ms${pid_cpu:+, proxy CPU ${sb_cpu_s} s}"
            ;;
        ro8)
            run_sysbench "$round" "$name" "$ep" oltp_read_only "${sb_oltp[@]}" \
                --threads=8 --time="$bench_time" || return 0
            sample "$round" ro8_qps "$ep" "$sb_qps"
            log "round $round $name $ep: $(printf '%.0f' "$sb_qps") QPS"
            ;;
        churn)
            run_sysbench "$round" "$name" "$ep" "$here/churn.lua" --threads=4 --time="$bench_time" || return 0
            local cps
            cps=$(awk -v e="$sb_events" -v t="$sb_total" 'BEGIN {printf "%.1f", e / t}')
            sample "$round" churn_cps "$ep" "$cps"
            if is_tls "$ep"; then
                # MariaDB's handshakes and session cache during the run.
                local i k
                read -r -a k <<<"$ssl_counters"
                for i in 0 1 2 3; do
                    sample "$round" "churn_${k[i],,}" "$ep" $((sb_ssl1[i] - sb_ssl0[i]))
                done
                log "round $round $name $ep: $cps connections/s; MariaDB ${k[1]} +$((sb_ssl1[1] - sb_ssl0[1])), ${k[2]} +$((sb_ssl1[2] - sb_ssl0[2])), ${k[3]} +$((sb_ssl1[3] - sb_ssl0[3]))"
                if [ "$ep" = myroute-tls2 ]; then
                    # MariaDB counts no resumption by session ticket (see the
                    # check at start): count them on the wire instead, with
                    # $resume_probe connections one after the other through
                    # myroute-resume, whose server leg passes helper.py tlsspy.
                    local n0 n1 rr_r rr_n
                    n0="$(wc -l <"$spy_log")"
                    run_sysbench "$round" churn-resumption myroute-resume "$here/churn.lua" \
                        --threads=1 --events="$resume_probe" --time=0 || return 0
                    sleep 0.2
                    n1="$(wc -l <"$spy_log")"
                    read -r rr_o rr_r rr_n <<<"$(tail -n +$((n0 + 1)) "$spy_log" | head -n $((n1 - n0)) |
                        awk '{o += $1; r += $2; n++} END {print o + 0, r + 0, n + 0}')"
                    [ "$rr_n" -ge "$resume_probe" ] ||
                        die "resumption probe: the relay saw $rr_n TLS handshakes for $resume_probe connections" "$sb_file"
                    sample "$round" resume_offered myroute-tls2 "$rr_o"
                    sample "$round" resume_reused myroute-tls2 "$rr_r"
                    sample "$round" resume_total myroute-tls2 "$rr_n"
                    log "round $round resumption: $rr_r of $rr_n myroute handshakes toward MariaDB resumed a session ($rr_o offered one)"
                fi
            else
                log "round $round $name $ep: $cps connections/s"
            fi
            ;;
        bulk)
            local h0 h1 mbps
            h0="$(qcache_hits)"
            run_sysbench "$round" "$name" "$ep" "${bulk_args[@]}" --time="$bench_time" || return 0
            h1="$(qcache_hits)"
            [ $((h1 - h0)) -ge "$sb_events" ] ||
                die "bulk against $ep: only $((h1 - h0)) of $sb_events results came from the query cache" "$sb_file"
            mbps=$(awk -v e="$sb_events" -v t="$sb_total" -v b=$((bulk_rows * bulk_row_bytes)) \
                'BEGIN {printf "%.1f", e * b / t / 1e6}')
            sample "$round" bulk_mbps "$ep" "$mbps"
            log "round $round $name $ep: $mbps MB/s ($sb_events results)"
            ;;
        *) die "unknown workload '$name' (known: ps4 ps32 ro8 churn bulk)" ;;
    esac
}

read -r -a workloads <<<"${BENCH_WORKLOADS:-ps4 ps32 ro8 churn bulk}"

tls_eps=()
[ "${#tls_workloads[@]}" -eq 0 ] || tls_eps=("${tls_endpoints[@]}")
log "warm-up: each endpoint once (also fills the query cache for the bulk result)"
for ep in "${endpoints[@]}" "${tls_eps[@]}"; do
    run_sysbench 0 warm "$ep" oltp_read_only "${sb_oltp[@]}" --threads=4 --time=2 || true
    run_sysbench 0 warm-bulk "$ep" "${bulk_args[@]}" --events=2 --time=0 || true
done

read -r busy0 total0 <<<"$(cpu_busy_total)"
times >"$tmp/times.txt"   # in this shell: a subshell would not see its children
ours0=$(($(children_ticks) + $(daemon_ticks "$db_pid" "$hap_pid" "$my_pid" $my_tls_pid $my_tls2_pid)))
for round in $(seq 1 "$rounds"); do
    log "round $round of $rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for name in "${workloads[@]}"; do
        eps=("${endpoints[@]}")
        if [ "$round" -le "$tls_rounds" ]; then
            case " ${tls_workloads[*]} " in *" $name "*) eps+=("${tls_endpoints[@]}") ;; esac
        fi
        for ep in "${eps[@]}"; do
            workload "$round" "$name" "$ep"
        done
    done
done

read -r busy1 total1 <<<"$(cpu_busy_total)"
times >"$tmp/times.txt"
ours1=$(($(children_ticks) + $(daemon_ticks "$db_pid" "$hap_pid" "$my_pid" $my_tls_pid $my_tls2_pid)))
others_pct=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v t=$((total1 - total0)) \
    'BEGIN {x = (b - o) / t * 100; if (x < 0) x = 0; printf "%.0f", x}')
log "other processes used about $others_pct% of the machine's CPU during the timed rounds (busy $((busy1 - busy0)), ours $((ours1 - ours0)), total $((total1 - total0)) ticks)"
meta_set stalls "$stalls"
meta_set others_cpu "about $others_pct% of the machine's CPU time during the timed rounds (estimate: /proc/stat busy time minus this benchmark's processes)"

sleep 1
meta_set rss_after_kib "$(rss_kib "$my_pid")"

# --------------------------------------------------------------------------
# 1 vs 2 myroute processes sharing a port (reuse_port), when supported.

reuse_cfg="$out/myroute-reuse.conf"
write_myroute_cfg "$reuse_cfg" "$reuse_port_port" "reuse_port = yes"
if "$myroute_bin" --check -c "$reuse_cfg" >"$out/myroute-reuse-check.log" 2>&1; then
    log "reuse_port: 1 vs 2 myroute processes, point_select 32 threads"
    RUST_LOG=warn "$myroute_bin" -c "$reuse_cfg" >>"$out/myroute-reuse.log" 2>&1 &
    r1=$!
    pids+=("$r1")
    wait_listen "$reuse_port_port" "$r1" "$out/myroute-reuse.log" "myroute (reuse_port)"
    saved_my_port="$my_port"
    my_port="$reuse_port_port"
    hap=() one=() two=()
    for round in $(seq 1 "$rounds"); do
        run_sysbench "$round" reuse-haproxy haproxy oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time" ||
            die "reuse_port comparison stalled" "$out/stalls.txt"
        hap+=("$sb_qps")
        run_sysbench "$round" reuse-1proc myroute oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time" ||
            die "reuse_port comparison stalled" "$out/stalls.txt"
        one+=("$sb_qps")
        RUST_LOG=warn "$myroute_bin" -c "$reuse_cfg" >>"$out/myroute-reuse.log" 2>&1 &
        r2=$!
        pids+=("$r2")
        sleep 0.5
        kill -0 "$r2" 2>/dev/null || die "second myroute process (reuse_port) exited" "$out/myroute-reuse.log"
        run_sysbench "$round" reuse-2proc myroute oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time" ||
            die "reuse_port comparison stalled" "$out/stalls.txt"
        two+=("$sb_qps")
        stop_pid "$r2"
        log "reuse_port round $round: HAProxy ${hap[-1]%.*}, myroute 1 process ${one[-1]%.*}, 2 processes ${two[-1]%.*} QPS"
    done
    my_port="$saved_my_port"
    stop_pid "$r1"
    med() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {printf "%.0f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
    mh="$(med "${hap[@]}")" m1="$(med "${one[@]}")" m2="$(med "${two[@]}")"
    meta_set reuse_port "point_select, 32 threads, median QPS over $rounds rounds (HAProxy, 1 process, 2 processes in turn): HAProxy $mh; myroute with \`reuse_port = yes\`, 1 process $m1 (×$(awk -v a="$m1" -v h="$mh" 'BEGIN {printf "%.2f", a / h}') HAProxy), 2 processes $m2 (×$(awk -v a="$m2" -v h="$mh" 'BEGIN {printf "%.2f", a / h}') HAProxy, ×$(awk -v a="$m2" -v b="$m1" 'BEGIN {printf "%.2f", a / b}') 1 process)"
else
    reason="$(head -n 1 "$out/myroute-reuse-check.log" | sed "s|$out/||")"
    log "reuse_port not available ($reason): 1 vs 2 processes skipped"
    meta_set reuse_port "reuse_port not available (myroute --check rejects the key: ${reason}); 1 vs 2 processes skipped"
fi

# --------------------------------------------------------------------------
# Start-up time: exec to the port accepting a TCP connection.

probe_cfg="$out/myroute-startup.conf"
write_myroute_cfg "$probe_cfg" "$probe_port"
log "start-up: $startup_runs starts"
RUST_LOG=warn "$python" "$here/helper.py" startup --port "$probe_port" --runs "$startup_runs" \
    -- "$myroute_bin" -c "$probe_cfg" >"$out/raw/startup.txt" 2>"$out/raw/startup.log" ||
    die "start-up measurement" "$out/raw/startup.log"
startup_ms=$(sort -n "$out/raw/startup.txt" | awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
meta_set startup_ms "$startup_ms"
meta_set startup_runs "$startup_runs"
log "start-up: median $startup_ms ms"
static_bin="$repo/target/x86_64-unknown-linux-musl/release/myroute"
if [ "$static_ok" = 1 ] && [ -x "$static_bin" ]; then
    RUST_LOG=warn "$python" "$here/helper.py" startup --port "$probe_port" --runs "$startup_runs" \
        -- "$static_bin" -c "$probe_cfg" >"$out/raw/startup-static.txt" 2>"$out/raw/startup-static.log" ||
        die "start-up measurement (static binary)" "$out/raw/startup-static.log"
    startup_static_ms=$(sort -n "$out/raw/startup-static.txt" | awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    meta_set startup_static_ms "$startup_static_ms"
    log "start-up of the static binary: median $startup_static_ms ms"
    RUST_LOG=warn "$static_bin" -c "$probe_cfg" >"$out/myroute-static.log" 2>&1 &
    static_pid=$!
    pids+=("$static_pid")
    wait_listen "$probe_port" "$static_pid" "$out/myroute-static.log" "myroute (static)"
    sleep 0.5
    meta_set rss_zero_static_kib "$(rss_kib "$static_pid")"
    stop_pid "$static_pid"
fi

# --------------------------------------------------------------------------
# Static binary sizes (with TLS, and without: make minimal) and the crates in
# the runtime dependency tree, myroute included.

if [ "$static_ok" = 1 ] && [ -f "$static_bin" ]; then
    if readelf -S "$static_bin" 2>/dev/null | grep -q '\.symtab'; then
        meta_set static_note "binary is not stripped"
    else
        meta_set static_size_bytes "$(stat -c %s "$static_bin")"
    fi
else
    meta_set static_note "make static failed or not built"
fi
minimal_bin="$repo/target/minimal/x86_64-unknown-linux-musl/release/myroute"
if [ "$minimal_ok" = 1 ] && [ -f "$minimal_bin" ]; then
    if readelf -S "$minimal_bin" 2>/dev/null | grep -q '\.symtab'; then
        meta_set minimal_note "binary is not stripped"
    else
        meta_set minimal_size_bytes "$(stat -c %s "$minimal_bin")"
    fi
else
    meta_set minimal_note "make minimal failed or not built"
fi
crates() {
    (cd "$repo" && cargo tree -e normal --prefix none --locked "$@") 2>>"$out/cargo-tree.log" |
        sed 's/ (\*)//' | sort -u | tee -a "$out/cargo-tree.txt" | wc -l
}
n_tls="$(crates)" || n_tls=""
n_min="$(crates --no-default-features)" || n_min=""
[ -z "$n_tls" ] || [ "$n_tls" -eq 0 ] || meta_set crates_tls "$n_tls"
[ -z "$n_min" ] || [ "$n_min" -eq 0 ] || meta_set crates_minimal "$n_min"
log "crates in the runtime tree: $n_tls with TLS, $n_min without"

# --------------------------------------------------------------------------
# Report

cpu_model="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
cpu_fm="$(awk -F': *' '/^cpu family/ {f=$2} /^model\t/ {m=$2} END {print "family " f ", model " m}' /proc/cpuinfo)"
virt=""
if grep -q '^flags.* hypervisor' /proc/cpuinfo; then virt=", virtual machine"; fi
mem_gib="$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
hap_threads_now="$(awk '/^Threads:/ {print $2}' "/proc/$hap_pid/status")"
meta_set date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta_set machine "$(nproc) cores, ${cpu_model} (${cpu_fm})${virt}, ${mem_gib} GiB"
meta_set kernel "$(uname -sr)"
meta_set mariadb "$(sql -e 'SELECT VERSION()')"
meta_set sysbench "$(sysbench --version | awk '{print $2}')"
meta_set haproxy "$("$haproxy_bin" -v | awk 'NR == 1 {print $3}')"
if [ -n "$haproxy_threads" ]; then
    meta_set haproxy_threads "$hap_threads_now (nbthread $haproxy_threads)"
else
    meta_set haproxy_threads "$hap_threads_now (no nbthread set: HAProxy's default, one per CPU)"
fi
meta_set myroute "$(git -C "$repo" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
meta_set rounds "$rounds"
[ "${#tls_workloads[@]}" -eq 0 ] || meta_set tls_rounds "$tls_rounds"
meta_set time "$bench_time"
meta_set load "$load_start (1, 5, 15 min, before the run; the run itself adds to it)"
if [ "$quick" = 1 ] || [ "$rounds" -lt 3 ]; then
    md="$out/results.md"
    svg="$out/results.svg"
else
    md="$here/results.md"
    svg="$here/results.svg"
fi
cat >"$out/method.md" <<EOF
- One MariaDB $(sql -e 'SELECT VERSION()') on 127.0.0.1 (own datadir in a temporary directory; \`query_cache_type=DEMAND\`, \`max_connections=$max_conn\`). HAProxy in TCP mode (\`maxconn 8000\` in \`global\` and \`defaults\`; no timeouts or buffer sizes set, so its documented defaults apply: no timeouts, 16 KiB buffers; $hap_threads_now threads) and myroute (\`buffer_size = 16384\`${my_extra:+, \`$my_extra\`}, other keys at their defaults, \`RUST_LOG=warn\`) each forward to it. Client, proxies and server share the machine.
- sysbench $(sysbench --version | awk '{print $2}'): $tables tables × $table_size rows, \`--db-ps-mode=disable\` (text protocol), $bench_time s per run, the same arguments for every endpoint. QPS and p95 latency as sysbench reports them.
- Connection churn: \`bench/churn.lua\`, 4 sysbench threads each looping over connect, login, \`SELECT 1\`, quit.
- Bulk: \`bench/bulk.lua\`, one sysbench thread reading \`SELECT SQL_CACHE REPEAT('x', $bulk_row_bytes) FROM seq_1_to_$bulk_rows\` ($((bulk_rows * bulk_row_bytes / 1000000)) MB of payload), which the server replays from its query cache (checked with \`Qcache_hits\` on every run); MB/s = 10^6 bytes of payload per second.
- Idle: $idle_conns connections logged in and pinged once through each proxy (\`bench/helper.py idle\`); the proxy's VmRSS after minus before, divided by $idle_conns.
- CPU: utime + stime of the proxy process (all its threads) from \`/proc/PID/stat\` over each point_select run, per 100,000 queries.
- Start-up: \`bench/helper.py startup\` spawns myroute (one backend reachable) and tries to connect to its port every 0.2 ms until it accepts; median of $startup_runs starts, for the release binary that the workloads use and for the static musl binary.
- RSS at zero connections: VmRSS of the freshly started myroute before any client connected.
EOF
if [ "${#tls_workloads[@]}" -gt 0 ]; then
    tls_seen="$(cd "$tls_dir/sysbench" && mariadb --no-defaults -h 127.0.0.1 -P "$db_port" -u"$db_user" \
        -p"$db_pass" --ssl --ssl-ca=cacert.pem -N -B \
        -e "SHOW STATUS LIKE 'Ssl_version'; SHOW STATUS LIKE 'Ssl_cipher'" 2>/dev/null | awk '{printf "%s%s", (NR > 1 ? ", " : ""), $2}')" || tls_seen="?"
    cat >>"$out/method.md" <<EOF
- TLS: a CA, a server certificate for 127.0.0.1 and a client certificate (ECDSA P-256, made with \`openssl\` in the temporary directory). MariaDB gets \`ssl_cert\`, \`ssl_key\` and \`ssl_ca\` (so it asks clients for a certificate; sysbench presents the client one). \`myroute-tls\`: a second myroute process with \`tls = required\`, \`tls.cert\`/\`tls.key\` set to the server certificate, plaintext toward MariaDB. \`myroute-tls2\`: a third with the same client leg plus \`pool.main.tls = verify_ca\` and \`pool.main.tls_ca\` = the CA. \`direct-tls\`: MariaDB itself over TLS ($tls_seen as MariaDB reports a direct session).
- sysbench 1.0.20 has only \`--mysql-ssl=on\` (and \`--mysql-ssl-cipher\`): it then loads \`client-key.pem\`, \`client-cert.pem\` and \`cacert.pem\` from its working directory, so TLS runs start in a directory holding the bench's files, and libmariadb checks the server's chain against the CA. Workloads over TLS: $(printf '%s, ' "${tls_workloads[@]}" | sed 's/, $//'), run against direct-tls, myroute-tls and myroute-tls2 right after the plaintext endpoints in every round. Every TLS run is checked: myroute's \`/metrics\` must count at least one TLS client login per sysbench connection (one per thread, one per churn event) and no plaintext one; MariaDB's \`Ssl_finished_accepts\` must grow by at least as many for direct-tls and myroute-tls2. A failed check stops the benchmark.
- Churn over TLS: every event is a new TCP connection with a full TLS handshake on the client leg (libmariadb keeps no session). MariaDB's \`Ssl_accepts\`, \`Ssl_finished_accepts\`, \`Ssl_session_cache_hits\` and \`Ssl_session_cache_misses\` are read before and after each churn run (they stay at zero for resumption by ticket; see the TLS section). The share of myroute's handshakes toward MariaDB that resumed a session is counted on the wire, with myroute-resume and \`helper.py tlsspy\`, right after each myroute-tls2 churn run.
- Idle over TLS: the same $idle_conns connections through myroute-tls, each sending an SSLRequest and completing a TLS handshake (Python's \`ssl\`, verifying the bench CA) before logging in.
- Sizes: \`make static\` (stripped static musl, TLS) and \`make minimal\` (the same with \`--no-default-features\`); crates: \`cargo tree -e normal --prefix none --locked | sed 's/ (\*)//' | sort -u | wc -l\`, with and without \`--no-default-features\`.
EOF
fi
"$python" "$here/helper.py" report --samples "$samples" --meta "$meta" --method "$out/method.md" \
    --md "$md" --svg "$svg" | tee "$out/results.txt"
log "wrote $md and $svg (raw logs in $out)"
if [ "$quick" = 1 ] || [ "$rounds" -lt 3 ]; then
    log "quick/short run: bench/results.md and bench/results.svg were left as they were"
fi
