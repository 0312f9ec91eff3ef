//! The small-heap efficiency table on its own, for 32-bit hosts:
//!
//! ```text
//! rustup target add i686-unknown-linux-musl     # self-contained: no gcc multilib needed
//! cargo run --release --manifest-path benches/small-heap-32/Cargo.toml \
//!     --target i686-unknown-linux-musl -- --help
//! ```
//!
//! `cargo xtask bench --small-heap` runs it when that target is installed.

#[path = "../../src/small_heap.rs"]
#[allow(dead_code)]
mod small_heap;

fn main() {
    small_heap::main_with_args()
}
