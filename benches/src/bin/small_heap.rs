//! The small-heap efficiency table (`cargo xtask bench --small-heap`): see
//! `cpuheap_bench::small_heap`. `small_heap --help` for the options.

fn main() {
    cpuheap_bench::small_heap::main_with_args()
}
