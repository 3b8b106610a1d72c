#!/usr/bin/env bash
# myroute benchmark: one MariaDB on loopback, HAProxy (TCP mode) and myroute
# in front of it; every workload runs against the three endpoints in turn
# (direct, haproxy, myroute, direct, ...) for BENCH_ROUNDS rounds. Prints
# medians and ratios, and writes bench/results.md and bench/results.svg.
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
#
# Needs root to install missing Debian packages (mariadb-server,
# mariadb-client, sysbench, haproxy, python3) and to start mariadbd as the
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
[ "$build" = 1 ] || static_ok=1
out="${BENCH_OUT:-$here/out}"
myroute_bin="${MYROUTE_BIN:-$repo/target/release/myroute}"
python="${PYTHON:-python3}"

# Workload shape (the same for every endpoint).
tables=4
table_size=10000
bulk_rows=200
bulk_row_bytes=1000000
db_user=sbtest
db_pass=sbtest-bench-password
endpoints=(direct haproxy myroute)

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
    --performance-schema=OFF --max-allowed-packet=64M >"$out/mariadbd.out" 2>&1 &
db_pid=$!
pids+=("$db_pid")
wait_listen "$db_port" "$db_pid" "$db_err" mariadbd 60

sql() { mariadb --no-defaults -S "$db_sock" -uroot -N -B "$@"; }
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

port_of() {
    case "$1" in
        direct) echo "$db_port" ;;
        haproxy) echo "$hap_port" ;;
        myroute) echo "$my_port" ;;
    esac
}
pid_of() {
    case "$1" in
        haproxy) echo "$hap_pid" ;;
        myroute) echo "$my_pid" ;;
        *) echo "" ;;
    esac
}
sample() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$samples"; }

# --------------------------------------------------------------------------
# Idle scale: N logged-in idle connections through each proxy.

for ep in haproxy myroute; do
    log "idle: $idle_conns logged-in connections through $ep"
    res="$("$python" "$here/helper.py" idle --port "$(port_of "$ep")" --user "$db_user" \
        --password "$db_pass" --db sbtest --count "$idle_conns" --pid "$(pid_of "$ep")" \
        2>"$out/raw/idle-$ep.log")" || die "idle connections through $ep" "$out/raw/idle-$ep.log"
    read -r before after <<<"$res"
    per=$(awk -v a="$after" -v b="$before" -v n="$idle_conns" 'BEGIN {printf "%.3f", (a - b) / n}')
    log "idle: $ep RSS $before KiB -> $after KiB: $per KiB per connection"
    echo "$ep $before $after" >>"$out/raw/idle.txt"
    sample 1 idle_kib "$ep" "$per"
    # Let the backend finish closing before the next proxy's turn.
    sleep 2
done

# --------------------------------------------------------------------------
# Timed workloads

# run_sysbench ROUND NAME ENDPOINT SYSBENCH-ARGS...  -> sets sb_file, sb_cpu_s
run_sysbench() {
    local round="$1" name="$2" ep="$3"
    shift 3
    local port pid t0=0 t1=0 w0=0 w1=0
    port="$(port_of "$ep")"
    pid="$(pid_of "$ep")"
    sb_file="$out/raw/r$round-$name-$ep.txt"
    if [ -n "$pid" ]; then t0="$(cpu_ticks "$pid")"; w0="$(rq_wait_ns "$pid")"; fi
    if ! sysbench "$@" "${sb_common[@]}" --mysql-port="$port" run >"$sb_file" 2>&1; then
        die "sysbench $name against $ep (round $round)" "$sb_file"
    fi
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
}

qcache_hits() { sql -e "SHOW GLOBAL STATUS LIKE 'Qcache_hits'" | awk '{print $2}'; }

bulk_args=("$here/bulk.lua" --threads=1 --bulk-rows="$bulk_rows" --bulk-row-bytes="$bulk_row_bytes")

workload() {   # ROUND NAME ENDPOINT
    local round="$1" name="$2" ep="$3"
    case "$name" in
        ps4 | ps32)
            local threads="${name#ps}"
            run_sysbench "$round" "$name" "$ep" oltp_point_select "${sb_oltp[@]}" \
                --threads="$threads" --time="$bench_time"
            sample "$round" "${name}_qps" "$ep" "$sb_qps"
            sample "$round" "${name}_p95" "$ep" "$sb_p95"
            local pid_cpu=""
            if [ "$ep" != direct ]; then
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
                --threads=8 --time="$bench_time"
            sample "$round" ro8_qps "$ep" "$sb_qps"
            log "round $round $name $ep: $(printf '%.0f' "$sb_qps") QPS"
            ;;
        churn)
            run_sysbench "$round" "$name" "$ep" "$here/churn.lua" --threads=4 --time="$bench_time"
            local cps
            cps=$(awk -v e="$sb_events" -v t="$sb_total" 'BEGIN {printf "%.1f", e / t}')
            sample "$round" churn_cps "$ep" "$cps"
            log "round $round $name $ep: $cps connections/s"
            ;;
        bulk)
            local h0 h1 mbps
            h0="$(qcache_hits)"
            run_sysbench "$round" "$name" "$ep" "${bulk_args[@]}" --time="$bench_time"
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

log "warm-up: each endpoint once (also fills the query cache for the bulk result)"
for ep in "${endpoints[@]}"; do
    run_sysbench 0 warm "$ep" oltp_read_only "${sb_oltp[@]}" --threads=4 --time=2
    run_sysbench 0 warm-bulk "$ep" "${bulk_args[@]}" --events=2 --time=0
done

read -r busy0 total0 <<<"$(cpu_busy_total)"
times >"$tmp/times.txt"   # in this shell: a subshell would not see its children
ours0=$(($(children_ticks) + $(daemon_ticks "$db_pid" "$hap_pid" "$my_pid")))
for round in $(seq 1 "$rounds"); do
    log "round $round of $rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for name in "${workloads[@]}"; do
        for ep in "${endpoints[@]}"; do
            workload "$round" "$name" "$ep"
        done
    done
done

read -r busy1 total1 <<<"$(cpu_busy_total)"
times >"$tmp/times.txt"
ours1=$(($(children_ticks) + $(daemon_ticks "$db_pid" "$hap_pid" "$my_pid")))
others_pct=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v t=$((total1 - total0)) \
    'BEGIN {x = (b - o) / t * 100; if (x < 0) x = 0; printf "%.0f", x}')
log "other processes used about $others_pct% of the machine's CPU during the timed rounds (busy $((busy1 - busy0)), ours $((ours1 - ours0)), total $((total1 - total0)) ticks)"
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
        run_sysbench "$round" reuse-haproxy haproxy oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time"
        hap+=("$sb_qps")
        run_sysbench "$round" reuse-1proc myroute oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time"
        one+=("$sb_qps")
        RUST_LOG=warn "$myroute_bin" -c "$reuse_cfg" >>"$out/myroute-reuse.log" 2>&1 &
        r2=$!
        pids+=("$r2")
        sleep 0.5
        kill -0 "$r2" 2>/dev/null || die "second myroute process (reuse_port) exited" "$out/myroute-reuse.log"
        run_sysbench "$round" reuse-2proc myroute oltp_point_select "${sb_oltp[@]}" --threads=32 --time="$bench_time"
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
# Static binary size

if [ "$static_ok" = 1 ] && [ -f "$static_bin" ]; then
    if readelf -S "$static_bin" 2>/dev/null | grep -q '\.symtab'; then
        meta_set static_note "binary is not stripped"
    else
        meta_set static_size_bytes "$(stat -c %s "$static_bin")"
    fi
else
    meta_set static_note "make static failed or not built"
fi

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
"$python" "$here/helper.py" report --samples "$samples" --meta "$meta" --method "$out/method.md" \
    --md "$md" --svg "$svg" | tee "$out/results.txt"
log "wrote $md and $svg (raw logs in $out)"
if [ "$quick" = 1 ] || [ "$rounds" -lt 3 ]; then
    log "quick/short run: bench/results.md and bench/results.svg were left as they were"
fi
