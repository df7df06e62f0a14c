//! Every size limit of the log, in one place, with its unit and the reason
//! for its value.
//!
//! Invariants between the limits are checked at compile time below; the
//! per-log configuration ([`crate::Config`]) is checked against them at open.

/// Bytes reserved for the segment header at the start of every segment file.
/// The encoded header is [`SEGMENT_HEADER_LEN`] bytes; the rest of the region
/// is zero. 4096 bytes so that the first record starts on a boundary that is
/// a multiple of every O_DIRECT alignment we accept ([`MAX_DIO_ALIGN`]).
pub const SEGMENT_HEADER_REGION: u64 = 4096;

/// Bytes of the encoded segment header (magic .. CRC).
pub const SEGMENT_HEADER_LEN: usize = 64;

/// Bytes of a record header (CRC .. reserved), before the payload.
pub const RECORD_HEADER_LEN: usize = 40;

/// Every record starts at a multiple of this many bytes from the start of the
/// file, so that the header's 8-byte fields are naturally aligned and the
/// corruption check can re-synchronise on a fixed grid.
pub const RECORD_ALIGN: u64 = 8;

/// Bytes a seal record occupies (a header and no payload).
pub const SEAL_FRAME_LEN: u64 = RECORD_HEADER_LEN as u64;

/// Default maximum size of one segment file in bytes (64 MiB): large enough
/// that rolls (create + fallocate + two fsyncs) are rare at 1 GB/s, small
/// enough that retention frees space in useful steps.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Smallest segment size accepted (64 KiB); tests use it to roll often.
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// Largest segment size accepted (1 GiB): offsets inside a segment must fit
/// comfortably in `u32` record lengths and `usize` on every target.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Largest payload of one record in bytes (16 MiB). Operator state larger
/// than this must be chunked by the caller. The effective limit is also
/// bounded by the segment size (a record never spans segments).
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;

/// Default number of staged bytes at which the writer starts a group commit
/// without waiting for a flush request or the timer (1 MiB): large enough to
/// amortise one fdatasync, small enough to bound ack latency under load.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;

/// Staged-but-unwritten bytes above which `append` refuses with
/// back-pressure (64 MiB): bounds memory if the disk falls behind, while
/// holding tens of milliseconds of writes at 2 GB/s.
pub const MAX_STAGED_BYTES: usize = 64 << 20;

/// Most written chunk buffers kept for reuse (each about one batch): enough
/// to cover [`MAX_STAGED_BYTES`] at the default batch size, so a producer
/// that outruns the disk does not allocate (and page-fault) fresh buffers.
pub const MAX_SPARE_CHUNKS: usize = 66;

/// Written buffers of records larger than a chunk kept for reuse, in
/// bytes of capacity (64 MiB): a shard logging a snapshot of tens of MB
/// every epoch reuses its buffers instead of mapping fresh memory, which
/// the kernel zeroes (and a VM's host may have to fault in) every time.
pub const MAX_SPARE_LARGE_BYTES: usize = 64 << 20;

/// A buffer for a record larger than a chunk is rounded up to a multiple
/// of this (1 MiB), so records of about one size share buffers.
pub const LARGE_ROUND: usize = 1 << 20;

/// Staging buffers of at least this many bytes (256 KiB) are anonymous
/// memory maps (zeroed lazily by the kernel, huge pages requested) instead
/// of heap blocks that must be zeroed up front; smaller ones stay on the
/// heap, where a map would waste most of a huge page.
pub const ANON_MAP_MIN_BYTES: usize = 256 << 10;

/// Spare segments a log keeps ready ahead of its writer (2): one for the
/// next roll and one behind it, so a roll right after another still finds
/// one; retention keeps twice as many retired files to recycle
/// (`crate::spares`).
pub const DEFAULT_SPARE_SEGMENTS: usize = 2;

/// Bytes of zeros per write when a fresh spare segment is written out
/// (256 KiB, one fdatasync at the end): small enough that the log's own
/// write + sync queued behind one waits a fraction of a millisecond (with
/// every piece synced, the ack p99 at 470 k events/s was 36 ms with 4 MiB
/// pieces and 6.8 ms with 256 KiB, one run each of
/// `bench/scripts/ingest-latency.sh tcp 2 470k 1`; one sync at the end
/// was not measured against per-piece syncs).
pub const SPARE_ZERO_WRITE_BYTES: usize = 256 << 10;

/// Largest O_DIRECT alignment (bytes) the format supports: the header region
/// must be a multiple of it.
pub const MAX_DIO_ALIGN: u64 = 4096;

/// Sector size in bytes the durability argument assumes to be written
/// atomically (old or new content, never garbage); also the tear granularity
/// of the in-memory crash simulation.
pub const SECTOR_BYTES: usize = 512;

/// Submission-queue entries of a segment file's io_uring ring: one linked
/// write + fdatasync pair needs two; four leaves room and keeps the locked
/// ring memory tiny (well under the 8 MiB RLIMIT_MEMLOCK).
pub const RING_ENTRIES: u32 = 4;

const _: () = assert!(SEGMENT_HEADER_LEN as u64 <= SEGMENT_HEADER_REGION);
const _: () = assert!(SEGMENT_HEADER_REGION % MAX_DIO_ALIGN == 0);
const _: () = assert!(SEGMENT_HEADER_REGION % RECORD_ALIGN == 0);
const _: () = assert!(RECORD_HEADER_LEN as u64 % RECORD_ALIGN == 0);
const _: () = assert!(MIN_SEGMENT_BYTES % MAX_DIO_ALIGN == 0);
const _: () = assert!(MIN_SEGMENT_BYTES > SEGMENT_HEADER_REGION + 2 * SEAL_FRAME_LEN);
const _: () = assert!(DEFAULT_SEGMENT_BYTES >= MIN_SEGMENT_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES <= MAX_SEGMENT_BYTES);
const _: () = assert!(MAX_SEGMENT_BYTES <= u32::MAX as u64);
const _: () = assert!((MAX_PAYLOAD_BYTES as u64) < DEFAULT_SEGMENT_BYTES);
const _: () = assert!(DEFAULT_BATCH_BYTES < MAX_STAGED_BYTES);
const _: () = assert!(MAX_SPARE_CHUNKS >= MAX_STAGED_BYTES / DEFAULT_BATCH_BYTES + 2);
const _: () = assert!(MAX_DIO_ALIGN as usize % SECTOR_BYTES == 0);
