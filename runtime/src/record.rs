//! What a record is: any type that rkyv can archive and serialize.
//!
//! Records are serialized once, into a batch, when they are emitted; every
//! later reader (partitioner, processor, sink) reads the archived form in
//! place through [`Archived<T>`](rkyv::Archived). Bytes made by this process
//! are accessed without validation; bytes from outside the process must be
//! validated by the source that receives them.

use rkyv::rancor;
use rkyv::rancor::Strategy;
use rkyv::ser::allocator::{ArenaHandle, SubAllocator};
use rkyv::ser::sharing::Unshare;
use rkyv::ser::{Positional, Serializer, Writer};
use rkyv::util::AlignedVec;

/// A batch's bytes, as rkyv writes them.
///
/// rkyv pads before each record by writing a slice of zeros whose length is
/// only known at run time, which compiles to a call to `memset` even when
/// the length is zero (the common case: records are aligned already). This
/// writer skips empty writes; in a `perf` profile of the keyed-count
/// pipeline that `memset` call had taken 10-12% of the samples.
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

/// The serializer records are first written with: straight into a batch's
/// bytes, with a fixed scratch buffer (set up in a few instructions) for
/// types that need scratch space, no shared-pointer table (an `Rc` reached
/// twice is written twice) and a zero-sized error type. Everything here is
/// chosen so that serializing a plain record inlines to a few stores.
pub type BatchSerializer<'a, 'b> =
    Strategy<Serializer<&'b mut BatchBytes, SubAllocator<'a>, Unshare>, rancor::Failure>;

/// The serializer for records whose scratch needs exceed the fixed buffer
/// (or that failed to serialize): a growable arena and a descriptive error.
pub type LargeBatchSerializer<'a, 'b> =
    Strategy<Serializer<&'b mut BatchBytes, ArenaHandle<'a>, Unshare>, rancor::Error>;

/// A record type that can travel through a weir pipeline.
///
/// Implemented for every `'static` type that derives rkyv's `Archive` and
/// `Serialize`: `#[derive(rkyv::Archive, rkyv::Serialize)]`.
pub trait Record:
    rkyv::Archive
    + for<'a, 'b> rkyv::Serialize<BatchSerializer<'a, 'b>>
    + for<'a, 'b> rkyv::Serialize<LargeBatchSerializer<'a, 'b>>
    + 'static
{
}

impl<T> Record for T where
    T: rkyv::Archive
        + for<'a, 'b> rkyv::Serialize<BatchSerializer<'a, 'b>>
        + for<'a, 'b> rkyv::Serialize<LargeBatchSerializer<'a, 'b>>
        + 'static
{
}

/// The archived (zero-copy) view of record type `T`.
pub type ArchivedRecord<T> = <T as rkyv::Archive>::Archived;

/// Serializes `value` on its own into `bytes` (replacing what they held),
/// as rkyv bytes whose root is at the end (what `rkyv::access` reads), with
/// the serializer batches fall back to. `bytes` and `arena` are reused, so
/// a caller that keeps them allocates nothing once warm.
///
/// For a source that logs what it accepted through an
/// [`IntakeLog`](crate::IntakeLog) as records: the bytes come back, after a
/// crash, to [`Source::replay`](crate::Source::replay), which must validate
/// them (they were written by another process).
///
/// ```
/// let (mut bytes, mut arena) = (rkyv::util::AlignedVec::new(), rkyv::ser::allocator::Arena::new());
/// weir_runtime::record::serialize_into(&vec![1u64, 2, 3], &mut bytes, &mut arena).unwrap();
/// let archived = rkyv::access::<rkyv::Archived<Vec<u64>>, rkyv::rancor::Error>(&bytes).unwrap();
/// assert_eq!(archived.len(), 3);
/// ```
pub fn serialize_into<T>(
    value: &T,
    bytes: &mut AlignedVec,
    arena: &mut rkyv::ser::allocator::Arena,
) -> Result<(), crate::error::SerializeError>
where
    T: for<'a, 'b> rkyv::Serialize<LargeBatchSerializer<'a, 'b>>,
{
    let mut writer = BatchBytes(std::mem::take(bytes));
    writer.0.clear();
    let mut serializer = Serializer::new(&mut writer, arena.acquire(), Unshare);
    let result = rkyv::api::serialize_using::<_, rancor::Error>(value, &mut serializer);
    *bytes = writer.0;
    result
        .map(drop)
        .map_err(|error| crate::error::SerializeError {
            message: error.to_string(),
        })
}
