//! walbench: the WAL against raw O_DIRECT writes on the same file system.
//!
//! One run, in one directory (`--dir`, default a fresh directory under the
//! current one — not /tmp, which may be tmpfs; tmpfs is refused):
//! 1. raw: the same bytes as sequential O_DIRECT writes through io_uring, in
//!    `--batch-mib` writes at queue depth 1, (a) each linked to an fdatasync
//!    (the WAL's durability discipline) and (b) with one fdatasync at the
//!    end;
//! 2. WAL: 100-byte records appended by one thread (one `append` per record,
//!    or `--per-call` per `append_batch`), group-committed by the writer in
//!    chunks of at most `--batch-mib` (one write + fdatasync each, depth 1);
//!
//!    Bytes counted, both sides: records × frame length (40-byte header +
//!    payload + padding to 8), i.e. exactly the framed log bytes. Raw writes
//!    exactly those bytes (the last write rounded up to 4 KiB); the WAL
//!    writes them plus segment headers, seals and rewritten partial blocks,
//!    which are not counted in its figure.
//! 3. append path: records/s one appending thread achieves (bursts that fit
//!    in the staging limit, writer running concurrently; median of 5), with
//!    `append` and with `append_batch`;
//! 4. ack latency (append → durable future completes) with a durable flush
//!    every 1 ms and every 10 ms, at a paced `--rate`, via hdrhistogram.

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use io_uring::{opcode, squeue, types, IoUring};
use std::alloc::Layout;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_wal::format::frame_len;
use weir_wal::{AppendError, Config, Entry, Lsn, RecordType, Wal};

#[derive(Parser, Debug)]
#[command(about = "WAL vs raw O_DIRECT bandwidth, append rate and ack latency")]
struct Args {
    /// Directory to write in (default: ./walbench-<pid>, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// MiB written by each bandwidth phase.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Group-commit / raw write size in MiB.
    #[arg(long, default_value_t = 8)]
    batch_mib: usize,
    /// Record payload bytes.
    #[arg(long, default_value_t = 100)]
    record: usize,
    /// Records per second offered during the latency phases.
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Records per `append_batch` call in the batched bandwidth phase.
    #[arg(long, default_value_t = 1024)]
    per_call: u64,
    /// Seconds per latency phase.
    #[arg(long, default_value_t = 2.0)]
    latency_secs: f64,
}

const TMPFS_MAGIC: i64 = 0x0102_1994;
const PAGE: usize = 4096;

// `f_type`'s integer type differs between libc targets; the cast is the
// portable spelling.
#[allow(clippy::unnecessary_cast)]
fn check_fs(dir: &Path) -> Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs writes into a zeroed plain struct; c is a valid C string.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        bail!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    if st.f_type as i64 == TMPFS_MAGIC {
        bail!(
            "{} is on tmpfs (no O_DIRECT, no durability); pass --dir on a disk",
            dir.display()
        );
    }
    Ok(())
}

/// An aligned, filled buffer for the raw writes.
struct Buf(*mut u8, Layout);
impl Buf {
    fn new(len: usize) -> Result<Self> {
        let layout = Layout::from_size_align(len, PAGE)?;
        // SAFETY: non-zero size layout.
        let p = unsafe { std::alloc::alloc(layout) };
        if p.is_null() {
            bail!("out of memory");
        }
        // SAFETY: p is valid for len bytes.
        unsafe { std::ptr::write_bytes(p, 0x5a, len) };
        Ok(Self(p, layout))
    }
}
impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) }
    }
}

/// Sequential O_DIRECT writes of `batch` bytes through io_uring; each
/// linked to an fdatasync if `sync_each`. Returns seconds.
fn raw(path: &Path, total: u64, batch: usize, sync_each: bool) -> Result<f64> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, total as libc::off_t) } != 0 {
        bail!("fallocate: {}", std::io::Error::last_os_error());
    }
    let buf = Buf::new(batch)?;
    let mut ring = IoUring::new(4)?;
    let fd = types::Fd(f.as_raw_fd());
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < total || off == 0 {
        let last = off + batch as u64 >= total;
        // The last write covers the rest, rounded up to the page (O_DIRECT).
        let len = (batch as u64).min((total - off).div_ceil(PAGE as u64) * PAGE as u64);
        let w = opcode::Write::new(fd, buf.0, len as u32)
            .offset(off)
            .build()
            .user_data(1);
        let mut n = 1;
        // SAFETY: buf outlives the submission; we wait for all completions.
        unsafe {
            if sync_each || last {
                let s = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(2);
                ring.submission()
                    .push(&w.flags(squeue::Flags::IO_LINK))
                    .map_err(|_| anyhow::anyhow!("sq full"))?;
                ring.submission()
                    .push(&s)
                    .map_err(|_| anyhow::anyhow!("sq full"))?;
                n = 2;
            } else {
                ring.submission()
                    .push(&w)
                    .map_err(|_| anyhow::anyhow!("sq full"))?;
            }
        }
        ring.submit_and_wait(n)?;
        for cqe in ring.completion() {
            if cqe.result() < 0 {
                bail!(
                    "raw io error {}",
                    std::io::Error::from_raw_os_error(-cqe.result())
                );
            }
        }
        off += batch as u64;
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn append(wal: &Wal, payload: &[u8], epoch: u64) -> Result<Lsn> {
    loop {
        match wal.append(RecordType::INPUT, epoch, payload) {
            Ok(l) => return Ok(l),
            Err(AppendError::Backpressure) => std::thread::yield_now(),
            Err(e) => bail!("append: {e}"),
        }
    }
}

fn wal_cfg(batch: usize, interval: Option<Duration>) -> Config {
    Config {
        batch_bytes: batch,
        flush_interval: interval,
        ..Config::default()
    }
}

fn append_batch(wal: &Wal, entries: &[Entry<'_>]) -> Result<Lsn> {
    loop {
        match wal.append_batch(entries) {
            Ok(Some(l)) => return Ok(l),
            Ok(None) => bail!("empty batch"),
            Err(AppendError::Backpressure) => std::thread::yield_now(),
            Err(e) => bail!("append: {e}"),
        }
    }
}

/// Appends `records` records, one `append` call each or `per_call` per
/// `append_batch` call; returns seconds until the last is durable.
fn wal_bandwidth(
    dir: &Path,
    records: u64,
    batch: usize,
    payload: &[u8],
    per_call: u64,
) -> Result<f64> {
    let (wal, _) = Wal::open_dir(dir, &wal_cfg(batch, None))?;
    let entry = Entry {
        kind: RecordType::INPUT,
        epoch: 0,
        payload,
    };
    let entries = vec![entry; per_call as usize];
    let t0 = Instant::now();
    let mut last = Lsn(0);
    let mut i = 0;
    while i < records {
        if per_call <= 1 {
            last = append(&wal, payload, i >> 20)?;
            i += 1;
        } else {
            let n = per_call.min(records - i) as usize;
            last = append_batch(&wal, &entries[..n])?;
            i += n as u64;
        }
    }
    wal.wait_durable(last)?;
    let secs = t0.elapsed().as_secs_f64();
    wal.close()?;
    Ok(secs)
}

/// Median records/s of one appending thread over bursts, `per_call`
/// records per call (1: `append`, more: `append_batch`).
fn append_rate(dir: &Path, batch: usize, payload: &[u8], per_call: u64) -> Result<f64> {
    let (wal, _) = Wal::open_dir(dir, &wal_cfg(batch, None))?;
    let per_call = per_call.max(1);
    let burst = (128u64 << 20) / frame_len(payload.len()) / per_call * per_call;
    let entry = Entry {
        kind: RecordType::INPUT,
        epoch: 0,
        payload,
    };
    let entries = vec![entry; per_call as usize];
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut last = Lsn(0);
        let mut i = 0;
        while i < burst {
            last = if per_call == 1 {
                append(&wal, payload, i)?
            } else {
                append_batch(&wal, &entries)?
            };
            i += per_call;
        }
        rates.push(burst as f64 / t0.elapsed().as_secs_f64());
        wal.wait_durable(last)?;
    }
    wal.close()?;
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// Ack latency histogram (µs) at `rate` records/s with a flush every `every`.
fn latency(
    dir: &Path,
    every: Duration,
    rate: u64,
    secs: f64,
    payload: &[u8],
) -> Result<Histogram<u64>> {
    let (wal, _) = Wal::open_dir(dir, &wal_cfg(32 << 20, Some(every)))?;
    let tick = Duration::from_micros(100);
    let per_tick = (rate / 10_000).max(1);
    let ticks = (secs / tick.as_secs_f64()) as u64;
    let n = (ticks * per_tick) as usize;
    let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let base = wal.durable_lsn().0;
    let t0 = Instant::now();
    let hist = std::thread::scope(|s| -> Result<Histogram<u64>> {
        let waiter = s.spawn(|| -> Result<Histogram<u64>> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
            let mut next = base;
            while next < base + n as u64 {
                futures_lite::future::block_on(wal.durable(Lsn(next)))?;
                let now = t0.elapsed().as_nanos() as u64;
                let d = wal.durable_lsn().0.min(base + n as u64);
                for l in next..d {
                    let at = stamps[(l - base) as usize].load(Ordering::Acquire);
                    h.record(((now.saturating_sub(at)) / 1000).max(1))?;
                }
                next = d;
            }
            Ok(h)
        });
        let mut i = 0usize;
        for t in 0..ticks {
            for _ in 0..per_tick {
                stamps[i].store(t0.elapsed().as_nanos() as u64, Ordering::Release);
                append(&wal, payload, t)?;
                i += 1;
            }
            let due = tick * (t as u32 + 1);
            let el = t0.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
        waiter
            .join()
            .map_err(|_| anyhow::anyhow!("waiter panicked"))?
    })?;
    wal.close()?;
    Ok(hist)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let (dir, remove) = match &a.dir {
        Some(d) => (d.join(format!("walbench-{}", std::process::id())), true),
        None => (
            std::env::current_dir()?.join(format!("walbench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let res = run(&a, &dir);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}

fn run(a: &Args, dir: &Path) -> Result<()> {
    check_fs(dir)?;
    let payload = vec![0xA5u8; a.record];
    let frame = frame_len(a.record);
    let records = (a.mib << 20) / frame;
    let bytes = records * frame;
    let probe = dir.join("probe");
    let align = weir_wal::storage::file::dio_alignment(&std::fs::File::create(&probe)?, &probe)?;
    println!(
        "walbench: dir {}  O_DIRECT align {align} B  record {} B (frame {frame} B)  batch {} MiB  {} MiB per phase",
        dir.display(),
        a.record,
        a.batch_mib,
        bytes >> 20
    );
    println!(
        "bytes counted, both sides: {records} records x {frame} B frame = {bytes} B (header+payload+padding); \
         raw writes exactly these (last write rounded up to 4 KiB), the WAL writes them plus segment headers, \
         seals and rewritten partial blocks (not counted); both: {} MiB writes, queue depth 1",
        a.batch_mib
    );
    bandwidth(a, dir, records, &payload)?;
    append_and_latency(a, dir, &payload)
}

/// Phases 3 and 4: append rates and ack latency.
fn append_and_latency(a: &Args, dir: &Path, payload: &[u8]) -> Result<()> {
    let batch = a.batch_mib << 20;
    for per_call in [1, a.per_call] {
        let rate = append_rate(&dir.join("wal-rate"), batch, payload, per_call)?;
        std::fs::remove_dir_all(dir.join("wal-rate"))?;
        let how = if per_call == 1 {
            "append x1".to_string()
        } else {
            format!("append_batch x{per_call}")
        };
        println!(
            "append path, one thread, {how:<17}: {:6.2} M records/s = {:5.1} ns/record (median of 5 bursts of 128 MiB, writer running)",
            rate / 1e6,
            1e9 / rate
        );
    }
    for (ms, name) in [(1u64, "wal-lat1"), (10, "wal-lat10")] {
        let h = latency(
            &dir.join(name),
            Duration::from_millis(ms),
            a.rate,
            a.latency_secs,
            payload,
        )?;
        println!(
            "ack latency, flush every {ms:>2} ms : p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>6} us  (n={}, {} rec/s)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len(),
            a.rate
        );
    }
    Ok(())
}

/// Phases 1 and 2: raw and WAL bandwidth over the same `records` frames.
fn bandwidth(a: &Args, dir: &Path, records: u64, payload: &[u8]) -> Result<()> {
    let batch = a.batch_mib << 20;
    let bytes = records * frame_len(a.record);
    // Two rounds in opposite orders (the machine is noisy and the first
    // phase of a process runs cold); each figure is the mean of its two runs.
    let mut t = [0.0f64; 4];
    for round in 0..2 {
        let order: [usize; 4] = if round == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for k in order {
            let d = dir.join(format!("phase{k}-{round}"));
            std::fs::create_dir_all(&d)?;
            t[k] += 0.5
                * match k {
                    0 => raw(&d.join("raw"), bytes, batch, true)?,
                    1 => raw(&d.join("raw"), bytes, batch, false)?,
                    2 => wal_bandwidth(&d, records, batch, payload, a.per_call)?,
                    _ => wal_bandwidth(&d, records, batch, payload, 1)?,
                };
            std::fs::remove_dir_all(&d)?;
        }
    }
    let [raw_sync, raw_nosync, wal_batch, wal_single] = t;
    let mbs = |s: f64| bytes as f64 / s / 1e6;
    println!(
        "raw  write+fdatasync per batch : {:8.1} MB/s",
        mbs(raw_sync)
    );
    println!(
        "raw  one fdatasync at the end  : {:8.1} MB/s",
        mbs(raw_nosync)
    );
    for (secs, how) in [
        (wal_batch, format!("append_batch x{}", a.per_call)),
        (wal_single, "append x1".to_string()),
    ] {
        println!(
            "WAL  {} B records, {how:<17}: {:8.1} MB/s ({:.2} M records/s durable)  ratio WAL/raw sync-per-batch {:.3}, WAL/raw sync-at-end {:.3}",
            a.record,
            mbs(secs),
            records as f64 / secs / 1e6,
            raw_sync / secs,
            raw_nosync / secs
        );
    }
    Ok(())
}
