#!/usr/bin/env bash
# Resident memory of a real server under each allocator: redis-server (Debian's, which links
# jemalloc) on its own, and with libcpuheap.so and libmimalloc.so.2 preloaded. redis-benchmark
# fills it (400k set/lpush/sadd/hset of 256 B, 200k set of 2000 B, 400k set/lpop/spop of
# 64 B, 200 000 random keys, 20 clients, pipelines of 16), then FLUSHALL empties it.
#
#   benches/redis-rss.sh [RUNS]        (default 3; needs redis-server, redis-tools,
#                                       libmimalloc2.0 from apt, and a release libcpuheap.so)
#
# Prints, per run and allocator: RSS after the fill, redis's own used_memory, RSS one second
# after FLUSHALL, and the fill's wall time; then the medians as a markdown table.
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CPUHEAP=$ROOT/target/release/libcpuheap.so
MIMALLOC=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
[ -f "$CPUHEAP" ] || (cd "$ROOT" && cargo build --release -p cpuheap-capi >&2)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "needs redis-server and redis-benchmark (apt install redis-server)" >&2; exit 2; }

one() { # label preload
    local label=$1 pre=$2 port dir pid
    port=$((7000 + RANDOM % 1000))
    dir=$(mktemp -d)
    env ${pre:+LD_PRELOAD=$pre} redis-server --port "$port" --save '' --appendonly no \
        --dir "$dir" --daemonize no >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    rss() { awk '/VmRSS/{print $2}' "/proc/$pid/status"; }
    local t0 t1 loaded used flushed
    t0=$(date +%s.%N)
    redis-benchmark -p "$port" -q -n 400000 -r 200000 -d 256 -c 20 -P 16 -t set,lpush,sadd,hset >/dev/null 2>&1
    redis-benchmark -p "$port" -q -n 200000 -r 200000 -d 2000 -c 20 -P 16 -t set >/dev/null 2>&1
    redis-benchmark -p "$port" -q -n 400000 -r 200000 -d 64 -c 20 -P 16 -t set,lpop,spop >/dev/null 2>&1
    t1=$(date +%s.%N)
    loaded=$(rss)
    used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    redis-cli -p "$port" flushall >/dev/null
    sleep 1
    flushed=$(rss)
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    printf "%s %d %d %d %.2f\n" "$label" $((loaded / 1024)) $((used / 1048576)) $((flushed / 1024)) "$(echo "$t1 - $t0" | bc)"
}

out=$(mktemp)
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$RUNS"); do
    one jemalloc "" | tee -a "$out" >&2
    one cpuheap "$CPUHEAP" | tee -a "$out" >&2
    [ -f "$MIMALLOC" ] && one mimalloc "$MIMALLOC" | tee -a "$out" >&2
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| allocator | RSS filled (MiB) | redis used_memory (MiB) | RSS 1 s after FLUSHALL (MiB) | fill time (s) |"
echo "|---|---:|---:|---:|---:|"
for a in jemalloc cpuheap mimalloc; do
    grep "^$a " "$out" >/dev/null || continue
    med() { grep "^$a " "$out" | awk -v c="$1" '{print $c}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
    echo "| $a | $(med 2) | $(med 3) | $(med 4) | $(med 5) |"
done
rm -f "$out"
