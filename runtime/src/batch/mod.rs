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
//! Limits: a batch is full at [`BATCH_RECORDS_MAX`] records or
//! [`BATCH_BYTES_MAX`] bytes, whichever comes first.

mod pool;

pub use pool::{BufferGauge, BufferPool};

use std::any::TypeId;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::sync::Arc;

use rkyv::rancor;
use rkyv::ser::allocator::{Arena, SubAllocator};
use rkyv::ser::sharing::Share;
use rkyv::ser::Serializer;
use rkyv::util::AlignedVec;

use crate::limits::{BATCH_BYTES_INITIAL, BATCH_BYTES_MAX, BATCH_RECORDS_MAX, SCRATCH_BYTES};
use crate::record::{ArchivedRecord, BatchBytes, Record};

/// A record could not be serialized (an error from the record type's own
/// `Serialize`, or a record larger than a whole batch).
#[derive(Debug)]
pub struct SerializeError {
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for SerializeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot serialize record: {}", self.message)
    }
}

impl std::error::Error for SerializeError {}

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
pub struct RawBatch {
    bytes: BatchBytes,
    positions: Vec<u32>,
    record_type: Option<TypeId>,
    gauge: Arc<BufferGauge>,
}

impl std::fmt::Debug for RawBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBatch")
            .field("records", &self.positions.len())
            .field("bytes", &self.bytes.0.len())
            .finish()
    }
}

impl RawBatch {
    fn new(gauge: Arc<BufferGauge>) -> RawBatch {
        gauge.allocated();
        RawBatch {
            bytes: BatchBytes(AlignedVec::with_capacity(BATCH_BYTES_INITIAL)),
            positions: Vec::with_capacity(BATCH_RECORDS_MAX),
            record_type: None,
            gauge,
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Bytes of serialized records.
    pub fn bytes_len(&self) -> usize {
        self.bytes.0.len()
    }

    /// Whether the batch reached a limit and must be handed on.
    pub fn is_full(&self) -> bool {
        self.positions.len() >= BATCH_RECORDS_MAX || self.bytes.0.len() >= BATCH_BYTES_MAX
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.0.clear();
        self.positions.clear();
        self.record_type = None;
    }

    /// Serializes `record` at the end of the batch.
    ///
    /// `scratch` is reused across calls so serializing allocates nothing
    /// once warm.
    #[inline]
    pub fn push<T: Record>(
        &mut self,
        record: &T,
        scratch: &mut Scratch,
    ) -> Result<(), SerializeError> {
        self.record_type = Some(TypeId::of::<T>());
        let start = self.bytes.0.len();
        let writer = mem::take(&mut self.bytes);
        let mut serializer =
            Serializer::new(writer, SubAllocator::new(&mut scratch.small), Share::new());
        let result = rkyv::api::serialize_using::<_, rancor::Error>(record, &mut serializer);
        self.bytes = serializer.into_writer();
        let position = match result {
            Ok(position) => position,
            Err(_) => self.push_large(record, start, &mut scratch.arena)?,
        };
        let position = u32::try_from(position).map_err(|_| SerializeError {
            message: format!("record ends beyond {} bytes", u32::MAX),
        })?;
        self.positions.push(position);
        Ok(())
    }

    /// The slow path of `push`: the fixed scratch buffer was too small (or
    /// the record failed to serialize, which this retry reports).
    #[cold]
    fn push_large<T: Record>(
        &mut self,
        record: &T,
        start: usize,
        arena: &mut Arena,
    ) -> Result<usize, SerializeError> {
        self.bytes.0.resize(start, 0);
        let writer = mem::take(&mut self.bytes);
        let mut serializer = Serializer::new(writer, arena.acquire(), Share::new());
        let result = rkyv::api::serialize_using::<_, rancor::Error>(record, &mut serializer);
        self.bytes = serializer.into_writer();
        result.map_err(|error| {
            self.bytes.0.resize(start, 0);
            SerializeError {
                message: error.to_string(),
            }
        })
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

    /// The archived record at `index`.
    pub fn get(&self, index: usize) -> Option<&ArchivedRecord<T>> {
        let position = *self.raw.positions.get(index)?;
        Some(self.archived_at(position))
    }

    /// Every record, archived, in the order it was pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ArchivedRecord<T>> + '_ {
        self.raw
            .positions
            .iter()
            .map(|&position| self.archived_at(position))
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
