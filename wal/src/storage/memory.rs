//! In-memory [`Storage`] that simulates power loss, for the crash tests.
//!
//! Each file keeps its durable contents and the list of operations issued
//! since its last sync. [`MemStorage::crash_image`] builds the state a disk
//! could be in after power loss: durable contents, plus each un-synced write
//! torn at [`SECTOR_BYTES`] granularity (every sector independently old or
//! new, which includes every prefix), plus a random prefix of the directory
//! operations issued since the last directory sync. All randomness comes
//! from a caller-supplied seed, so every run is reproducible.
//!
//! Faults: [`MemStorage::crash_after`] makes the n-th mutating operation and
//! every later one fail (the machine "lost power" there; a write that hits
//! the crash point is issued but not synced). [`MemStorage::fail_sync_at`]
//! makes one sync fail with EIO while the store keeps working.
//!
//! Damage that is no crash: [`MemStorage::poke`] and [`MemStorage::set_len`]
//! change bytes, [`MemStorage::lose`] deletes a whole file (an operator's
//! `rm`, a restore that missed a file), for the tests of missing segments.

use super::{FileBytes, SegmentFile, Storage};
use crate::limits::SECTOR_BYTES;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// SplitMix64: a tiny deterministic generator for the crash simulation.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform-ish value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { off: u64, data: Vec<u8> },
    Resize(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, usize),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<String, usize>,
    durable_names: BTreeMap<String, usize>,
    dir_log: Vec<DirOp>,
    ops: u64,
    crash_at: Option<u64>,
    syncs: u64,
    fail_sync_at: Option<u64>,
    align: usize,
    seed: u64,
}

/// The in-memory store. Cloning shares the same state.
#[derive(Debug, Clone)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn apply_dir(names: &mut BTreeMap<String, usize>, op: &DirOp) {
    match op {
        DirOp::Link(n, i) => {
            names.insert(n.clone(), *i);
        }
        DirOp::Unlink(n) => {
            names.remove(n);
        }
        DirOp::Rename(a, b) => {
            if let Some(i) = names.remove(a) {
                names.insert(b.clone(), i);
            }
        }
    }
}

/// Resizes with zero fill; growth goes through a zeroed allocation, which
/// keeps debug-build tests fast.
fn resize_zero(v: &mut Vec<u8>, len: usize) {
    if len <= v.len() {
        v.truncate(len);
        return;
    }
    let mut n = vec![0u8; len];
    n[..v.len()].copy_from_slice(v);
    *v = n;
}

fn apply_write(content: &mut Vec<u8>, off: u64, data: &[u8]) {
    let off = off as usize;
    if content.len() < off + data.len() {
        resize_zero(content, off + data.len());
    }
    content[off..off + data.len()].copy_from_slice(data);
}

impl State {
    /// Counts one mutating operation; errors once the crash point is passed.
    fn tick(&mut self) -> io::Result<()> {
        if self.crash_at.is_some_and(|c| self.ops >= c) {
            return Err(power_lost());
        }
        self.ops += 1;
        Ok(())
    }
    fn crashed(&self) -> bool {
        self.crash_at.is_some_and(|c| self.ops >= c)
    }
    fn inode(&self, name: &str) -> io::Result<usize> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))
    }
    /// Ends a sync: fails if injected, else makes the inode durable.
    fn sync_inode(&mut self, ino: usize) -> io::Result<()> {
        let n = self.syncs;
        self.syncs += 1;
        if self.fail_sync_at == Some(n) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.tick()?;
        let node = &mut self.inodes[ino];
        for op in std::mem::take(&mut node.pending) {
            match op {
                FileOp::Resize(len) => resize_zero(&mut node.durable, len as usize),
                FileOp::Write { off, data } => apply_write(&mut node.durable, off, &data),
            }
        }
        debug_assert!(node.durable == node.current);
        Ok(())
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new(512, 0)
    }
}

impl MemStorage {
    /// An empty store with write alignment `align` and salt seed `seed`.
    pub fn new(align: usize, seed: u64) -> Self {
        assert!(align.is_power_of_two() && align >= SECTOR_BYTES);
        let state = State {
            inodes: Vec::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dir_log: Vec::new(),
            ops: 0,
            crash_at: None,
            syncs: 0,
            fail_sync_at: None,
            align,
            seed,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test failure already; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power is lost when `n` more mutating operations have been issued: that
    /// operation and every later one fail.
    pub fn crash_after(&self, n: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.ops + n);
    }

    /// Mutating operations issued so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the simulated power loss has happened.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed()
    }

    /// The sync with index `n` (counting every file sync from 0, including
    /// earlier ones) fails with EIO.
    pub fn fail_sync_at(&self, n: u64) {
        self.lock().fail_sync_at = Some(n);
    }

    /// File syncs issued so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// A new store holding what the disk could contain after power loss now,
    /// drawn from `seed`.
    pub fn crash_image(&self, seed: u64) -> MemStorage {
        let s = self.lock();
        let mut rng = SplitMix(seed);
        let mut names = s.durable_names.clone();
        let keep = rng.below(s.dir_log.len() as u64 + 1) as usize;
        for op in &s.dir_log[..keep] {
            apply_dir(&mut names, op);
        }
        let inodes = s.inodes.iter().map(|n| Self::tear(n, &mut rng)).collect();
        let state = State {
            inodes,
            names: names.clone(),
            durable_names: names,
            dir_log: Vec::new(),
            ops: 0,
            crash_at: None,
            syncs: 0,
            fail_sync_at: None,
            align: s.align,
            seed: s.seed.wrapping_add(1),
        };
        MemStorage {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn tear(node: &Inode, rng: &mut SplitMix) -> Inode {
        let mut c = node.durable.clone();
        for op in &node.pending {
            match op {
                FileOp::Resize(len) => {
                    if rng.below(2) == 0 {
                        resize_zero(&mut c, *len as usize);
                    }
                }
                FileOp::Write { off, data } => {
                    let mut at = 0usize;
                    while at < data.len() {
                        let abs = *off as usize + at;
                        let end = ((abs / SECTOR_BYTES + 1) * SECTOR_BYTES - *off as usize)
                            .min(data.len());
                        if rng.below(2) == 0 {
                            apply_write(&mut c, abs as u64, &data[at..end]);
                        }
                        at = end;
                    }
                }
            }
        }
        Inode {
            durable: c.clone(),
            current: c,
            pending: Vec::new(),
        }
    }

    /// Overwrites bytes of a file directly and makes the whole file durable,
    /// for corruption tests.
    pub fn poke(&self, name: &str, offset: usize, bytes: &[u8]) {
        let mut s = self.lock();
        let ino = s.names[name];
        let node = &mut s.inodes[ino];
        apply_write(&mut node.current, offset as u64, bytes);
        node.durable = node.current.clone();
        node.pending.clear();
    }

    /// Sets a file's length directly and makes the whole file durable, for
    /// truncation tests.
    pub fn set_len(&self, name: &str, len: usize) {
        let mut s = self.lock();
        let ino = s.names[name];
        let node = &mut s.inodes[ino];
        resize_zero(&mut node.current, len);
        node.durable = node.current.clone();
        node.pending.clear();
    }

    /// Deletes a file at once and durably, outside the log's control (as
    /// an operator or a faulty tool would); panics if it does not exist.
    pub fn lose(&self, name: &str) {
        let mut s = self.lock();
        assert!(s.names.remove(name).is_some(), "no file {name}");
        s.durable_names.remove(name);
        s.dir_log.retain(|op| match op {
            DirOp::Link(n, _) | DirOp::Unlink(n) => n != name,
            DirOp::Rename(a, b) => a != name && b != name,
        });
    }

    /// A copy of a file's current contents.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names.get(name).map(|&i| s.inodes[i].current.clone())
    }
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().names.keys().cloned().collect())
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Box<dyn SegmentFile>> {
        let mut s = self.lock();
        s.tick()?;
        if s.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        let ino = s.inodes.len();
        s.inodes.push(Inode {
            durable: Vec::new(),
            current: vec![0; len as usize],
            pending: vec![FileOp::Resize(len)],
        });
        s.names.insert(name.to_string(), ino);
        s.dir_log.push(DirOp::Link(name.to_string(), ino));
        let align = s.align;
        Ok(Box::new(MemFile {
            store: self.clone(),
            ino,
            align,
        }))
    }

    fn open_write(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        let s = self.lock();
        let ino = s.inode(name)?;
        Ok(Box::new(MemFile {
            store: self.clone(),
            ino,
            align: s.align,
        }))
    }

    fn read(&self, name: &str) -> io::Result<FileBytes> {
        let s = self.lock();
        let ino = s.inode(name)?;
        Ok(FileBytes::Owned(s.inodes[ino].current.clone()))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let ino = s.inode(from)?;
        s.names.remove(from);
        s.names.insert(to.to_string(), ino);
        s.dir_log
            .push(DirOp::Rename(from.to_string(), to.to_string()));
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        s.inode(name)?;
        s.names.remove(name);
        s.dir_log.push(DirOp::Unlink(name.to_string()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        s.durable_names = s.names.clone();
        s.dir_log.clear();
        Ok(())
    }

    fn entropy(&self) -> u64 {
        let mut s = self.lock();
        s.seed = s.seed.wrapping_add(1);
        SplitMix(s.seed).next_u64()
    }
}

/// An open file of a [`MemStorage`].
#[derive(Debug)]
struct MemFile {
    store: MemStorage,
    ino: usize,
    align: usize,
}

impl MemFile {
    /// One write operation (a crash point), applied but not yet durable.
    fn stage_write(&self, s: &mut State, offset: u64, data: &[u8]) -> io::Result<()> {
        assert!(
            offset % self.align as u64 == 0 && data.len() % self.align == 0,
            "unaligned direct write"
        );
        s.tick()?;
        let node = &mut s.inodes[self.ino];
        apply_write(&mut node.current, offset, data);
        node.pending.push(FileOp::Write {
            off: offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

impl SegmentFile for MemFile {
    fn align(&self) -> usize {
        self.align
    }

    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.store.lock();
        self.stage_write(&mut s, offset, data)?;
        s.sync_inode(self.ino)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.stage_write(&mut self.store.lock(), offset, data)
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.store.lock();
        s.tick()?;
        s.sync_inode(self.ino)
    }

    fn truncate_sync(&mut self, len: u64, reserve: u64) -> io::Result<()> {
        let mut s = self.store.lock();
        s.tick()?;
        let node = &mut s.inodes[self.ino];
        node.current.truncate(len as usize);
        node.pending.push(FileOp::Resize(len));
        let full = reserve.max(len);
        resize_zero(&mut node.current, full as usize);
        node.pending.push(FileOp::Resize(full));
        s.sync_inode(self.ino)
    }
}
