//! What a record is: any type that rkyv can archive and serialize.
//!
//! Records are serialized once, into a batch, when they are emitted; every
//! later reader (partitioner, processor, sink) reads the archived form in
//! place through [`Archived<T>`](rkyv::Archived). Bytes made by this process
//! are accessed without validation; bytes from outside the process must be
//! validated by the source that receives them.

use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::{ArenaHandle, SubAllocator};
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;

/// A batch's bytes, as rkyv writes them.
///
/// rkyv pads before each record by writing a slice of zeros whose length is
/// only known at run time, which compiles to a call to `memset` even when
/// the length is zero (the common case: records are aligned already). This
/// writer skips empty writes; it cut the time of the keyed-count pipeline by
/// about a tenth.
#[derive(Debug, Default)]
pub struct BatchBytes(pub(crate) AlignedVec);

impl Positional for BatchBytes {
    #[inline]
    fn pos(&self) -> usize {
        self.0.len()
    }
}

impl<E> Writer<E> for BatchBytes {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        if !bytes.is_empty() {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// The serializer records are first written with: into a batch's aligned
/// buffer, with a fixed scratch buffer (set up in a few instructions) for
/// types that need scratch space.
pub type BatchSerializer<'a> = HighSerializer<BatchBytes, SubAllocator<'a>, rancor::Error>;

/// The serializer for records whose scratch needs exceed the fixed buffer:
/// a growable arena, slower to set up.
pub type LargeBatchSerializer<'a> = HighSerializer<BatchBytes, ArenaHandle<'a>, rancor::Error>;

/// A record type that can travel through a weir pipeline.
///
/// Implemented for every `'static` type that derives rkyv's `Archive` and
/// `Serialize`: `#[derive(rkyv::Archive, rkyv::Serialize)]`.
pub trait Record:
    rkyv::Archive
    + for<'a> rkyv::Serialize<BatchSerializer<'a>>
    + for<'a> rkyv::Serialize<LargeBatchSerializer<'a>>
    + 'static
{
}

impl<T> Record for T where
    T: rkyv::Archive
        + for<'a> rkyv::Serialize<BatchSerializer<'a>>
        + for<'a> rkyv::Serialize<LargeBatchSerializer<'a>>
        + 'static
{
}

/// The archived (zero-copy) view of record type `T`.
pub type ArchivedRecord<T> = <T as rkyv::Archive>::Archived;
