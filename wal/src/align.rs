//! Buffers aligned for O_DIRECT.
//!
//! Invariant: `ptr` is aligned to `align` (a power of two) and points to
//! `cap` zero-initialised-then-owned bytes; `cap` is a multiple of `align`.
//!
//! Large buffers (at least [`ANON_MAP_MIN_BYTES`], alignment at most a
//! page) are anonymous memory maps rather than heap blocks: the kernel hands
//! out zero pages lazily, so a staging buffer sized for a whole group commit
//! costs nothing until bytes are framed into it (the heap path must memset
//! all of it up front), and transparent huge pages are requested so that
//! filling it takes one page fault per 2 MiB rather than per 4 KiB.

use crate::limits::ANON_MAP_MIN_BYTES;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Smallest page size of the targets we run on; mmap returns addresses
/// aligned to it.
const PAGE: usize = 4096;

/// An owned, zero-initialised, aligned byte buffer of fixed capacity.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: Layout,
    /// The anonymous map that owns the bytes (`None`: a heap block).
    map: Option<memmap2::MmapMut>,
}

// SAFETY: the buffer is uniquely owned plain bytes.
unsafe impl Send for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("cap", &self.layout.size())
            .field("align", &self.layout.align())
            .finish()
    }
}

impl AlignedBuf {
    /// A zeroed buffer of `cap` bytes (rounded up to `align`) aligned to
    /// `align`. Panics on a non-power-of-two alignment (programmer error)
    /// and aborts on allocation failure like `Vec`.
    pub fn new(cap: usize, align: usize) -> Self {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        let cap = cap.max(align).div_ceil(align) * align;
        let layout = match Layout::from_size_align(cap, align) {
            Ok(l) => l,
            Err(e) => panic!("bad buffer layout {cap}/{align}: {e}"),
        };
        if cap >= ANON_MAP_MIN_BYTES && align <= PAGE {
            if let Ok(mut map) = memmap2::MmapMut::map_anon(cap) {
                // Only a hint: without huge pages the map still works.
                let _ = map.advise(memmap2::Advice::HugePage);
                if let Some(ptr) = std::ptr::NonNull::new(map.as_mut_ptr()) {
                    let map = Some(map);
                    return Self { ptr, layout, map };
                }
            }
        }
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self {
            ptr,
            layout,
            map: None,
        }
    }

    /// Capacity in bytes.
    pub fn cap(&self) -> usize {
        self.layout.size()
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for cap initialised bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap()) }
    }

    /// The whole buffer, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for cap initialised bytes we own uniquely.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.map.is_some() {
            return; // the map unmaps itself
        }
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A growable byte vector whose storage is aligned for O_DIRECT, so staged
/// records can be written without a copy.
#[derive(Debug)]
pub struct AlignedVec {
    buf: AlignedBuf,
    len: usize,
}

impl AlignedVec {
    /// An empty vector with room for `cap` bytes, aligned to `align`.
    pub fn with_capacity(cap: usize, align: usize) -> Self {
        Self {
            buf: AlignedBuf::new(cap, align),
            len: 0,
        }
    }

    /// Bytes stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.cap()
    }

    /// Forgets the contents, keeping the storage.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The stored bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }

    fn reserve(&mut self, extra: usize) {
        let need = self.len + extra;
        if need > self.buf.cap() {
            let align = self.buf.layout.align();
            let mut n = AlignedBuf::new(need.max(self.buf.cap() * 2), align);
            n.as_mut_slice()[..self.len].copy_from_slice(&self.buf.as_slice()[..self.len]);
            self.buf = n;
        }
    }

    /// Grows by `n` bytes and returns them (contents unspecified: the caller
    /// overwrites every byte).
    pub fn grow(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        let start = self.len;
        self.len += n;
        &mut self.buf.as_mut_slice()[start..self.len]
    }

    /// Appends `data`.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.grow(data.len()).copy_from_slice(data);
    }

    /// Zero-pads to a multiple of `align` (without changing `len`) and
    /// returns the padded bytes, ready for an O_DIRECT write.
    pub fn padded(&mut self, align: usize) -> &[u8] {
        let padded = self.len.div_ceil(align) * align;
        self.reserve(padded - self.len);
        let len = self.len;
        let b = self.buf.as_mut_slice();
        b[len..padded].fill(0);
        &b[..padded]
    }
}
