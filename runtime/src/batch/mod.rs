//! Batches: many records serialized once into one aligned buffer.
//!
//! A [`RawBatch`] is an rkyv-aligned byte buffer plus the position of each
//! record's archived root in it. Records are appended with
//! [`RawBatch::push`], which serializes them in place; readers get
//! [`Batch<T>`], a typed view whose iterator yields archived records straight
//! from the buffer (no deserialization, no copy).
//!
//! A batch moves between shards by moving the `RawBatch` value: the buffer's
//! heap memory changes owner, its bytes are never copied. Buffers come from
//! and go back to a shard-local [`BufferPool`], so steady-state traffic
//! allocates nothing.
//!
//! Limits: a batch is full at [`BATCH_MAX_RECORDS`] records or
//! [`BATCH_MAX_BYTES`] bytes, whichever comes first.

mod pool;

pub use pool::{BufferGauge, BufferPool, ReturnRings};

use std::any::TypeId;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

use rkyv::rancor;
use rkyv::ser::allocator::{Arena, SubAllocator};
use rkyv::ser::sharing::Unshare;
use rkyv::ser::Serializer;
use rkyv::util::AlignedVec;

use crate::error::SerializeError;
use crate::limits::{BATCH_INITIAL_BYTES, BATCH_MAX_BYTES, BATCH_MAX_RECORDS, SCRATCH_BYTES};
use crate::record::{ArchivedRecord, BatchBytes, Record};

/// Whether records of type `T` are stored back to back at a fixed stride
/// (`size_of::<T>()`), without positions: rkyv attests that the archived
/// form is the native bytes, and the stride keeps every record aligned (the
/// buffer itself is 16-byte aligned). Constant for each `T`.
#[inline(always)]
const fn fixed_size<T: Record>() -> bool {
    let archived_align = std::mem::align_of::<ArchivedRecord<T>>();
    T::COPY_OPTIMIZATION.is_enabled()
        && size_of::<T>() > 0
        && archived_align <= 16
        && size_of::<T>() % archived_align == 0
}

/// Copies the bytes of a record of type `T` into the batch.
///
/// A record has usually just been built on the stack field by field; one
/// wide load spanning several of those fresh narrow stores cannot be
/// store-forwarded and stalls the core for a dozen cycles. For types aligned
/// to 8 bytes, 8-byte loads match the stores; they are volatile so the
/// compiler does not merge them back into one wide load.
///
/// # Safety
/// `source` must point to a valid `T` with no padding bytes, `target` to
/// `size_of::<T>()` writable bytes, and the two must not overlap.
#[inline(always)]
unsafe fn copy_record_bytes<T>(source: *const T, target: *mut u8) {
    let len = size_of::<T>();
    if std::mem::align_of::<T>() >= 8 && len % 8 == 0 {
        let words = source.cast::<u64>();
        for word in 0..len / 8 {
            // SAFETY: `source` is 8-aligned and holds `len / 8` initialized
            // words; `target` has room for them (unaligned writes).
            unsafe {
                let value = std::ptr::read_volatile(words.add(word));
                target.add(word * 8).cast::<u64>().write_unaligned(value);
            }
        }
    } else {
        // SAFETY: per the contract.
        unsafe { std::ptr::copy_nonoverlapping(source.cast::<u8>(), target, len) };
    }
}

/// Scratch space for serializing records, reused for every record a node
/// instance emits.
pub struct Scratch {
    small: Box<[MaybeUninit<u8>]>,
    arena: Arena,
}

impl Scratch {
    /// Scratch space of [`SCRATCH_BYTES`] plus a growable arena.
    pub fn new() -> Scratch {
        Scratch {
            small: vec![MaybeUninit::uninit(); SCRATCH_BYTES].into_boxed_slice(),
            arena: Arena::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("bytes", &self.small.len())
            .finish()
    }
}

/// An untyped batch buffer: serialized records and where each one's root is.
///
/// Records of a copy-optimized type (rkyv's `COPY_OPTIMIZATION`: archived
/// bytes equal native bytes, no padding) all have the same size, so record
/// `i` sits at `i * size_of::<T>()` and no positions are stored; other
/// records' root positions are kept in `positions`.
pub struct RawBatch {
    bytes: BatchBytes,
    records: usize,
    positions: Vec<u32>,
    record_type: Option<TypeId>,
    gauge: Arc<BufferGauge>,
    /// The shard whose pool this buffer belongs to.
    home: usize,
}

impl std::fmt::Debug for RawBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBatch")
            .field("records", &self.records)
            .field("bytes", &self.bytes.0.len())
            .finish()
    }
}

impl RawBatch {
    fn new(gauge: Arc<BufferGauge>, home: usize) -> RawBatch {
        gauge.allocated();
        RawBatch {
            bytes: BatchBytes(AlignedVec::with_capacity(BATCH_INITIAL_BYTES)),
            records: 0,
            positions: Vec::new(),
            record_type: None,
            gauge,
            home,
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes of serialized records.
    pub fn bytes_len(&self) -> usize {
        self.bytes.0.len()
    }

    /// Whether the batch reached a limit and must be handed on.
    pub fn is_full(&self) -> bool {
        self.records >= BATCH_MAX_RECORDS || self.bytes.0.len() >= BATCH_MAX_BYTES
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.0.clear();
        self.records = 0;
        self.positions.clear();
        self.record_type = None;
    }

    /// Serializes `record` at the end of the batch.
    ///
    /// `scratch` is reused across calls so serializing allocates nothing
    /// once warm.
    #[inline(always)]
    pub fn push<T: Record>(
        &mut self,
        record: &T,
        scratch: &mut Scratch,
    ) -> Result<(), SerializeError> {
        if self.records == 0 {
            self.record_type = Some(TypeId::of::<T>());
        }
        if fixed_size::<T>() {
            self.push_copy(record);
            self.records += 1;
            return Ok(());
        }
        let start = self.bytes.0.len();
        let mut serializer = Serializer::new(
            &mut self.bytes,
            SubAllocator::new(&mut scratch.small),
            Unshare,
        );
        let position =
            match rkyv::api::serialize_using::<_, rancor::Failure>(record, &mut serializer) {
                Ok(position) if position <= u32::MAX as usize => position,
                _ => self.push_large(record, start, &mut scratch.arena)?,
            };
        self.positions.push(position as u32);
        self.records += 1;
        Ok(())
    }

    /// `push` for a type whose archived form is its own bytes: rkyv sets
    /// `COPY_OPTIMIZATION` only for types with no padding whose fields all
    /// have the same layout archived, so copying the bytes is serializing.
    #[inline(always)]
    fn push_copy<T: Record>(&mut self, record: &T) {
        let position = self.bytes.0.len();
        debug_assert_eq!(position, self.records * size_of::<T>());
        self.bytes.0.reserve(size_of::<T>());
        // SAFETY: `record` is a valid `T` of `size_of::<T>()` bytes and rkyv
        // attested (COPY_OPTIMIZATION) that `T` has no padding, so all its
        // bytes are initialized; `reserve` made room for them at `position`.
        unsafe {
            let target = self.bytes.0.as_mut_ptr().add(position);
            copy_record_bytes(record as *const T, target);
            self.bytes.0.set_len(position + size_of::<T>());
        }
    }

    /// The slow path of `push`: the fixed scratch buffer was too small, or
    /// the record failed to serialize (the retry says why), or the batch
    /// grew past what a `u32` position can address.
    #[cold]
    fn push_large<T: Record>(
        &mut self,
        record: &T,
        start: usize,
        arena: &mut Arena,
    ) -> Result<usize, SerializeError> {
        self.bytes.0.resize(start, 0);
        let mut serializer = Serializer::new(&mut self.bytes, arena.acquire(), Unshare);
        let result = rkyv::api::serialize_using::<_, rancor::Error>(record, &mut serializer);
        let failure = match result {
            Ok(position) if position <= u32::MAX as usize => return Ok(position),
            Ok(_) => format!("record ends beyond {} bytes", u32::MAX),
            Err(error) => error.to_string(),
        };
        self.bytes.0.resize(start, 0);
        Err(SerializeError { message: failure })
    }

    /// This batch viewed as holding records of type `T`.
    ///
    /// # Panics
    /// If the batch was filled with another record type (a graph wiring bug:
    /// the graph checks edge types when it is built).
    pub fn typed<T: Record>(&self) -> &Batch<T> {
        assert!(
            self.record_type.is_none_or(|id| id == TypeId::of::<T>()),
            "batch viewed as {} but holds another record type",
            std::any::type_name::<T>()
        );
        // SAFETY: `Batch<T>` is `repr(transparent)` over `RawBatch`.
        unsafe { &*(self as *const RawBatch as *const Batch<T>) }
    }
}

impl Drop for RawBatch {
    fn drop(&mut self) {
        self.gauge.freed();
    }
}

/// A batch of records of type `T`, read in place.
#[repr(transparent)]
pub struct Batch<T> {
    raw: RawBatch,
    _record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Record> Batch<T> {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Bytes of serialized (archived) records in the batch.
    pub fn bytes_len(&self) -> usize {
        self.raw.bytes_len()
    }

    /// The archived record at `index`.
    pub fn get(&self, index: usize) -> Option<&ArchivedRecord<T>> {
        if index >= self.raw.records {
            return None;
        }
        Some(self.archived_at(self.position(index)))
    }

    /// The records as one slice, when their type is stored at a fixed
    /// stride (a copy-optimized rkyv type: plain fields, no padding, no
    /// out-of-line data); `None` otherwise. Loops over a slice compile to the
    /// tightest code.
    pub fn as_slice(&self) -> Option<&[ArchivedRecord<T>]> {
        if !fixed_size::<T>() {
            return None;
        }
        let base = self.raw.bytes.0.as_ptr().cast::<ArchivedRecord<T>>();
        // SAFETY: for fixed-size types, `push_copy` wrote `records` archived
        // records back to back from the start of the 16-byte aligned buffer,
        // and `fixed_size` checked that the stride keeps each aligned.
        Some(unsafe { std::slice::from_raw_parts(base, self.raw.records) })
    }

    /// Every record, archived, in the order it was pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ArchivedRecord<T>> + '_ {
        (0..self.raw.records).map(|index| self.archived_at(self.position(index)))
    }

    #[inline(always)]
    fn position(&self, index: usize) -> u32 {
        if fixed_size::<T>() {
            (index * size_of::<T>()) as u32
        } else {
            self.raw.positions[index]
        }
    }

    fn archived_at(&self, position: u32) -> &ArchivedRecord<T> {
        // SAFETY: `position` was returned by serializing a `T` into these very
        // bytes in this process (`RawBatch::push`, checked by `typed`), and the
        // bytes have not changed since.
        unsafe {
            rkyv::api::access_pos_unchecked::<ArchivedRecord<T>>(
                &self.raw.bytes.0,
                position as usize,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
    struct Plain {
        a: u64,
        b: u32,
        c: u32,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
    struct WithText {
        id: u16,
        text: String,
        tags: Vec<String>,
    }

    fn batch() -> RawBatch {
        RawBatch::new(Arc::new(BufferGauge::default()), 0)
    }

    #[test]
    fn plain_records_are_stored_at_a_fixed_stride() {
        assert!(fixed_size::<Plain>());
        let (mut raw, mut scratch) = (batch(), Scratch::new());
        for i in 0..100u64 {
            raw.push(
                &Plain {
                    a: i,
                    b: i as u32 * 2,
                    c: 7,
                },
                &mut scratch,
            )
            .unwrap();
        }
        assert!(raw.positions.is_empty());
        assert_eq!(raw.bytes_len(), 100 * size_of::<Plain>());
        let typed = raw.typed::<Plain>();
        assert_eq!(typed.len(), 100);
        for (i, record) in typed.iter().enumerate() {
            assert_eq!(
                (
                    record.a.to_native(),
                    record.b.to_native(),
                    record.c.to_native()
                ),
                (i as u64, i as u32 * 2, 7)
            );
        }
        assert_eq!(typed.get(99).map(|r| r.a.to_native()), Some(99));
        let slice = typed.as_slice().expect("fixed size");
        assert_eq!(slice.len(), 100);
        assert_eq!(slice[42].b.to_native(), 84);
        assert!(typed.get(100).is_none());
    }

    #[test]
    fn records_with_out_of_line_data_keep_positions() {
        assert!(!fixed_size::<WithText>());
        let (mut raw, mut scratch) = (batch(), Scratch::new());
        let long = "x".repeat(10_000); // more scratch than the fixed buffer
        let records: Vec<WithText> = (0..50u16)
            .map(|id| WithText {
                id,
                text: if id == 7 {
                    long.clone()
                } else {
                    format!("record {id}")
                },
                tags: (0..id % 4).map(|t| format!("tag{t}")).collect(),
            })
            .collect();
        for record in &records {
            raw.push(record, &mut scratch).unwrap();
        }
        let typed = raw.typed::<WithText>();
        assert_eq!(typed.len(), records.len());
        assert!(typed.as_slice().is_none());
        for (archived, record) in typed.iter().zip(&records) {
            assert_eq!(archived.id.to_native(), record.id);
            assert_eq!(archived.text.as_str(), record.text);
            let tags: Vec<&str> = archived.tags.iter().map(|t| t.as_str()).collect();
            assert_eq!(
                tags,
                record.tags.iter().map(String::as_str).collect::<Vec<_>>()
            );
        }
        raw.clear();
        assert!(raw.is_empty() && raw.bytes_len() == 0);
    }
}
