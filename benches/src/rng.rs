//! The workloads' PRNG: the project's shared one, identical for every allocator.

pub use cpuheap_testkit::Rng;
