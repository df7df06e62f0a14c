//! Benchmarks for weir: the shared keyed-count workload and the engines that run it.

pub mod count_table;
pub mod timely_keycount;
pub mod weir_keycount;
pub mod workload;
