//! Real-file [`Storage`]: O_DIRECT segment files written through io_uring
//! (a linked write + fdatasync per group commit), fallocate for
//! preallocation, memory maps for reading.
//!
//! The O_DIRECT alignment is queried per file, never assumed: statx
//! `STATX_DIOALIGN` (Linux >= 6.1), else the logical block size of the
//! underlying device from sysfs (what ioctl `BLKSSZGET` returns, but
//! reachable from a regular file), else `st_blksize` (the file-system block
//! size, a multiple of the logical block size on every Linux file system,
//! so sufficient though possibly stricter than needed).

use super::{FileBytes, SegmentFile, Storage};
use crate::limits::{MAX_DIO_ALIGN, RING_ENTRIES, SECTOR_BYTES};
use io_uring::{opcode, squeue, types, IoUring};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Segment files in one directory of a real file system.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
}

impl FsStorage {
    /// Uses `dir`, creating it if `create` and it does not exist.
    pub fn open(dir: &Path, create: bool) -> io::Result<Self> {
        if create {
            fs::create_dir_all(dir)?;
        }
        if !fs::metadata(dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn open_direct(&self, name: &str, create: bool) -> io::Result<UringFile> {
        let path = self.path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| annotate(e, &path, "open with O_DIRECT"))?;
        let align = dio_alignment(&file, &path)?;
        if align > MAX_DIO_ALIGN as usize || !align.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: O_DIRECT alignment {align} not supported",
                    path.display()
                ),
            ));
        }
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| {
            annotate(
                e,
                &path,
                "io_uring setup (check RLIMIT_MEMLOCK, 8 MiB here)",
            )
        })?;
        Ok(UringFile {
            file,
            ring,
            align,
            path,
        })
    }
}

fn annotate(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The O_DIRECT alignment of `file` in bytes (see the module doc).
pub fn dio_alignment(file: &File, path: &Path) -> io::Result<usize> {
    if let Some(a) = statx_dioalign(file) {
        return Ok(a);
    }
    let meta = file.metadata()?;
    let dev = meta.dev();
    let sys = format!(
        "/sys/dev/block/{}:{}/queue/logical_block_size",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Some(v) = fs::read_to_string(sys)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        if v >= SECTOR_BYTES {
            return Ok(v);
        }
    }
    let blk = meta.blksize() as usize;
    if blk >= SECTOR_BYTES {
        return Ok(blk);
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: cannot determine the O_DIRECT alignment",
            path.display()
        ),
    ))
}

fn statx_dioalign(file: &File) -> Option<usize> {
    // SAFETY: statx only writes into `stx`, a plain-old-data struct for which
    // all-zero bytes are a valid value; the path is an empty C string used
    // with AT_EMPTY_PATH on a valid descriptor.
    let (rc, stx) = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let rc = libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        );
        (rc, stx)
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    let a = stx.stx_dio_offset_align.max(stx.stx_dio_mem_align) as usize;
    Some(a.max(SECTOR_BYTES))
}

fn fallocate(file: &File, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Box<dyn SegmentFile>> {
        let f = self.open_direct(name, true)?;
        fallocate(&f.file, len).map_err(|e| annotate(e, &f.path, "fallocate"))?;
        Ok(Box::new(f))
    }

    fn open_write(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(self.open_direct(name, false)?))
    }

    fn read(&self, name: &str) -> io::Result<FileBytes> {
        let path = self.path(name);
        let file = File::open(&path).map_err(|e| annotate(e, &path, "open"))?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the log directory is owned by one process (documented
        // assumption); nothing truncates the file while it is mapped. The
        // map is read-only and every read is bounds-checked by the scanner.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| annotate(e, &path, "mmap"))?;
        Ok(FileBytes::Mapped(map))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn entropy(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    }
}

/// An O_DIRECT file with its own small io_uring ring.
struct UringFile {
    file: File,
    ring: IoUring,
    align: usize,
    path: PathBuf,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFile")
            .field("path", &self.path)
            .field("align", &self.align)
            .finish()
    }
}

const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;

impl UringFile {
    /// Submits a write linked to an fdatasync and waits for both.
    fn linked_write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let fd = types::Fd(self.file.as_raw_fd());
        let write = opcode::Write::new(fd, data.as_ptr(), data.len() as u32)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE_TAG);
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC_TAG);
        // SAFETY: `data` outlives the submission: we wait below for both
        // completions before returning, and nothing else uses the ring.
        unsafe {
            let mut sq = self.ring.submission();
            sq.push(&write)
                .map_err(|_| io::Error::other("submission queue full"))?;
            sq.push(&sync)
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        let (mut wres, mut sres) = (None, None);
        while wres.is_none() || sres.is_none() {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                match cqe.user_data() {
                    WRITE_TAG => wres = Some(cqe.result()),
                    _ => sres = Some(cqe.result()),
                }
            }
        }
        let (w, s) = (wres.unwrap_or(-libc::EIO), sres.unwrap_or(-libc::EIO));
        if w < 0 {
            return Err(annotate(
                io::Error::from_raw_os_error(-w),
                &self.path,
                "write",
            ));
        }
        if w as usize != data.len() {
            let msg = format!("short write {w} of {} at {offset}", data.len());
            return Err(annotate(io::Error::other(msg), &self.path, "write"));
        }
        if s < 0 {
            return Err(annotate(
                io::Error::from_raw_os_error(-s),
                &self.path,
                "fdatasync",
            ));
        }
        Ok(())
    }
}

impl UringFile {
    fn check_aligned(&self, offset: u64, data: &[u8]) {
        assert!(
            offset % self.align as u64 == 0
                && data.len() % self.align == 0
                && data.as_ptr() as usize % self.align == 0,
            "unaligned direct write"
        );
    }
}

impl SegmentFile for UringFile {
    fn align(&self) -> usize {
        self.align
    }

    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_aligned(offset, data);
        self.linked_write_sync(offset, data)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_aligned(offset, data);
        self.file
            .write_all_at(data, offset)
            .map_err(|e| annotate(e, &self.path, "write"))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| annotate(e, &self.path, "fdatasync"))
    }

    fn truncate_sync(&mut self, len: u64, reserve: u64) -> io::Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| annotate(e, &self.path, "truncate"))?;
        fallocate(&self.file, reserve.max(len))
            .map_err(|e| annotate(e, &self.path, "fallocate"))?;
        self.file
            .sync_all()
            .map_err(|e| annotate(e, &self.path, "fsync"))
    }
}
