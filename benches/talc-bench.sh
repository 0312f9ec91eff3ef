#!/usr/bin/env bash
# talc's own arena benchmarks (heap_efficiency, random_actions) with cpuheap added as two
# more allocators, `Config::small()` and `Config::new()`, one CPU slot, over the same
# 128 MiB static arena the other allocators get.
#
#   benches/talc-bench.sh TALC_SRC [SCRATCH] [--no-random-actions]
#
# TALC_SRC is a talc checkout (a work tree, or a bare git directory such as the one the
# `fetch` tool leaves at /work/.mirror/SFBdragon+talc/repo); its HEAD is copied (git archive)
# into SCRATCH (default /work/scratch/talc, wiped first), so nothing in the project or in
# TALC_SRC is changed. The patch is the one below: a path dependency on this checkout of
# cpuheap in talc's benches/Cargo.toml, two init functions appended to benches/src/lib.rs,
# and two entries in its ARENA_ALLOCATORS list, after RLSF. The benches need nightly
# (`#![feature(iter_intersperse)]`). Results go to SCRATCH/results/*.csv and are printed as
# markdown tables.
set -euo pipefail

usage() { sed -n 2,15p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
TALC_SRC=$1
SCRATCH=${2:-/work/scratch/talc}
RANDOM_ACTIONS=1
for a in "$@"; do [ "$a" = --no-random-actions ] && RANDOM_ACTIONS=0; done
[ "$SCRATCH" = --no-random-actions ] && SCRATCH=/work/scratch/talc
CPUHEAP=$(cd "$(dirname "$0")/.." && pwd)

case "$SCRATCH" in
"$CPUHEAP"/*) echo "SCRATCH must be outside the project" >&2; exit 2 ;;
esac

if git -C "$TALC_SRC" rev-parse --is-bare-repository >/dev/null 2>&1; then
    GIT=(git -C "$TALC_SRC")
elif [ -d "$TALC_SRC/objects" ]; then
    GIT=(git --git-dir="$TALC_SRC")
else
    echo "$TALC_SRC is not a git checkout of talc" >&2; exit 2
fi
REV=$("${GIT[@]}" rev-parse HEAD)
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
"${GIT[@]}" archive HEAD | tar -x -C "$SCRATCH"
echo "talc $REV -> $SCRATCH; cpuheap from $CPUHEAP ($(git -C "$CPUHEAP" rev-parse --short HEAD))" >&2

cd "$SCRATCH"
# 1. cpuheap as one more dependency of talc's bench crate.
printf 'cpuheap = { path = "%s" }\n' "$CPUHEAP" >>benches/Cargo.toml

# 2. Two more arena allocators, listed right after RLSF.
grep -q 'NamedAllocator { name: "RLSF", init_fn: init_rlsf },' benches/src/lib.rs
sed -i 's|^\(\s*\)NamedAllocator { name: "RLSF", init_fn: init_rlsf },|&\n\1NamedAllocator { name: "cpuheap", init_fn: init_cpuheap },\n\1NamedAllocator { name: "cpuheap small()", init_fn: init_cpuheap_small },|' \
    benches/src/lib.rs
cat >>benches/src/lib.rs <<'EOF'

// --- added by cpuheap's benches/talc-bench.sh ---------------------------------------------
// cpuheap over the same arena: one `StaticRegion` run, one CPU slot, the default spin lock.
// The `Heap` value (slots, central lists, page-map header) lives in a Box, outside HEAP; its
// bitmap, page map and span records are carved from HEAP itself.

type CpuHeap =
    cpuheap::Heap<cpuheap::StaticRegion<1>, cpuheap::SingleCpu, cpuheap::DefaultRawMutex, 1>;

unsafe fn init_cpuheap_with(config: cpuheap::Config) -> Box<dyn GlobalAlloc + Sync> {
    let heap =
        Box::new(CpuHeap::new(cpuheap::StaticRegion::new(), cpuheap::SingleCpu::new(), config));
    let region: &'static mut [core::mem::MaybeUninit<u8>] =
        unsafe { core::slice::from_raw_parts_mut((&raw mut HEAP.0).cast(), HEAP_SIZE) };
    assert!(heap.add_region(region), "cpuheap refused the arena");
    heap
}

unsafe fn init_cpuheap() -> Box<dyn GlobalAlloc + Sync> {
    unsafe { init_cpuheap_with(cpuheap::Config::new()) }
}

unsafe fn init_cpuheap_small() -> Box<dyn GlobalAlloc + Sync> {
    unsafe { init_cpuheap_with(cpuheap::Config::small()) }
}
EOF

csv_to_md() { # csv with a header row -> markdown table
    awk -F, 'NR==1{h="|"; s="|"; for(i=1;i<=NF;i++){h=h" "$i" |"; s=s"---|"}; print h; print s; next}
             {r="|"; for(i=1;i<=NF;i++){r=r" "$i" |"}; print r}' "$1"
}

CARGO=(cargo +nightly)
# talc's benches read CARGO_MANIFEST_DIR at run time to find results/.
export CARGO_MANIFEST_DIR=$SCRATCH/benches
"${CARGO[@]}" build --release -p benches --bin heap_efficiency --bin random_actions
echo "## heap_efficiency (% of the 128 MiB arena live at first failure, mean of 300 fills)"
./target/release/heap_efficiency
# One row per allocator, easier to read than talc's one-line CSV.
paste -d, <(head -1 results/heap-efficiency.csv | tr , '\n') \
    <(sed -n 2p results/heap-efficiency.csv | tr , '\n') |
    awk -F, 'BEGIN{print "| allocator | heap efficiency |"; print "|---|---:|"}
             {printf "| %s | %.2f %% |\n", $1, $2}'
if [ "$RANDOM_ACTIONS" = 1 ]; then
    echo
    echo "## random_actions (actions per 200 ms, mean of 7 trials; columns: max alloc size, B)"
    ./target/release/random_actions --name random-actions
    csv_to_md results/random-actions.csv
fi
