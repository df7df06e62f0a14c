//! Crash on purpose at a named step of the protocol, for the
//! kill-and-recover tests.
//!
//! `WEIR_CRASH_AT=STEP:EPOCH` makes the process abort (as `kill -9` would:
//! no destructors, no flushing) when it reaches `STEP` for `EPOCH` or a later
//! epoch: the coordinator may commit two epochs with one record, and a
//! shard may run two epochs' commits in one go, so an exact epoch can be
//! passed over on a loaded machine, and a test that waits for it would see
//! the run finish instead. Steps:
//! `after-precommit` (a sink staged and logged its output, before the
//! commit record), `after-commit-record` (the commit record is durable, sink
//! commits not yet run), `during-commit` (after the first sink commit of the
//! epoch), `after-sink-commit` (a sink commit of the epoch ran, its
//! completion record is not written yet), `kafka-before-commit` (the
//! `kafka` sink sent an epoch's records and marker in its transaction and
//! has not committed it), `recovery` (after the logs were read, before anything restarted;
//! EPOCH is the recovered committed epoch). A scaled-out `kafka` source's
//! rebalance steps: `kafka-revoking` (the shard stopped emitting partitions
//! the group takes away, their last epoch EPOCH has not been waited for),
//! `kafka-revoked` (that epoch committed, the partitions are not given up
//! yet), `kafka-assigned` (partitions given to the member were assigned at
//! their offsets, none of their records read yet; EPOCH counts the
//! assignments that gave the member partitions, from 1), `kafka-restoring`
//! (a restore of keyed state from a changelog topic read EPOCH records and
//! has handed nothing to the operators yet).

use std::sync::OnceLock;

/// Aborts the process if `WEIR_CRASH_AT` names this step and epoch.
pub fn failpoint(step: &str, epoch: u64) {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let target = TARGET.get_or_init(|| {
        let value = std::env::var("WEIR_CRASH_AT").ok()?;
        let (name, epoch) = value.rsplit_once(':')?;
        Some((name.to_string(), epoch.parse().ok()?))
    });
    if let Some((name, at)) = target {
        if name == step && epoch >= *at {
            eprintln!("weir: WEIR_CRASH_AT={name}:{at} reached; aborting");
            std::process::abort();
        }
    }
}
