//! Node instances: how the graph's type-erased nodes become typed tasks
//! ([`spawn`]) and the loops those tasks run ([`task`]). A shard
//! (`crate::shard`) starts them; the graph (`crate::graph`) registers the
//! factories; neither is needed here, so the graph and the shards build on
//! this module without depending on each other in a loop.

pub(crate) mod spawn;
pub(crate) mod task;
