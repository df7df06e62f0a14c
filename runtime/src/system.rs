//! What the machine allows: usable cores, io_uring, locked memory.
//!
//! glommio registers io_uring buffers per executor; the kernel counts them as
//! locked memory against `RLIMIT_MEMLOCK`, unless the process holds
//! `CAP_IPC_LOCK`. glommio itself refuses to start below 512 KiB. We check
//! before starting any shard so the error names the limit, what is needed
//! and how to raise it, instead of a shard failing half-way through start-up.

use crate::error::StartError;
use crate::limits::SHARD_LOCKED_OVERHEAD_BYTES;

/// The ids of the cores this process may run on, in order.
pub(crate) fn usable_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect()
}

/// Fails if io_uring cannot be set up at all (old kernel, disabled by sysctl
/// or by a seccomp filter).
pub(crate) fn check_io_uring() -> Result<(), StartError> {
    // struct io_uring_params is 120 bytes; zeroed means "no flags".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which is large enough
    // and lives across the call; on success it returns an fd we close.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(StartError::IoUring(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a file descriptor we own and no longer use.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Fails if the locked-memory limit is below what `shards` shards need.
pub(crate) fn check_locked_memory(shards: usize, io_memory_bytes: usize) -> Result<(), StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        // The limit cannot be read; glommio reports its own error if needed.
        return Ok(());
    }
    locked_memory_verdict(limit.rlim_cur, shards, io_memory_bytes, has_ipc_lock())
}

/// The pure part of [`check_locked_memory`], for tests.
pub(crate) fn locked_memory_verdict(
    limit_bytes: u64,
    shards: usize,
    io_memory_bytes: usize,
    ipc_lock: bool,
) -> Result<(), StartError> {
    if limit_bytes == libc::RLIM_INFINITY {
        return Ok(());
    }
    // With CAP_IPC_LOCK the kernel does not count the buffers, but glommio
    // still insists on its minimum.
    let per_shard = if ipc_lock {
        SHARD_LOCKED_OVERHEAD_BYTES
    } else {
        io_memory_bytes + SHARD_LOCKED_OVERHEAD_BYTES
    };
    let needed_bytes = if ipc_lock {
        per_shard as u64
    } else {
        (per_shard * shards) as u64
    };
    if limit_bytes < needed_bytes {
        return Err(StartError::LockedMemory {
            limit_bytes,
            needed_bytes,
            shards,
        });
    }
    Ok(())
}

/// Whether this process holds CAP_IPC_LOCK (bit 14 of CapEff).
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_limit_is_reported_with_the_numbers() {
        let error = locked_memory_verdict(8 << 20, 14, 1 << 20, false).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("ulimit -l"), "{message}");
        assert!(message.contains("8192 KiB"), "{message}");
        assert!(message.contains("21504 KiB"), "{message}");
    }

    #[test]
    fn enough_or_privileged_passes() {
        assert!(locked_memory_verdict(8 << 20, 2, 1 << 20, false).is_ok());
        assert!(locked_memory_verdict(8 << 20, 14, 1 << 20, true).is_ok());
        assert!(locked_memory_verdict(libc::RLIM_INFINITY, 200, 1 << 20, false).is_ok());
        assert!(locked_memory_verdict(256 << 10, 1, 1 << 20, true).is_err());
    }
}
