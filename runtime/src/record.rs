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
use rkyv::util::AlignedVec;

/// The serializer records are first written with: into a batch's aligned
/// buffer, with a fixed scratch buffer (set up in a few instructions) for
/// types that need scratch space.
pub type BatchSerializer<'a> = HighSerializer<AlignedVec, SubAllocator<'a>, rancor::Error>;

/// The serializer for records whose scratch needs exceed the fixed buffer:
/// a growable arena, slower to set up.
pub type LargeBatchSerializer<'a> = HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>;

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
