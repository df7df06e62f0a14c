//! The ring itself: two indices, a slot array and a waker per side.

use std::cell::UnsafeCell;
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_utils::CachePadded;

/// Why a push did not take the item; the item is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// Every slot is taken: the consumer is behind.
    Full(T),
    /// The consumer is gone; nothing pushed now would ever be read.
    Closed(T),
}

struct Side {
    waker: AtomicWaker,
    parked: AtomicBool,
    closed: AtomicBool,
}

impl Side {
    fn new() -> Side {
        Side {
            waker: AtomicWaker::new(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Called by the other side after it moved its index or closed.
    fn wake_if_parked(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            self.parked.store(false, Ordering::Relaxed);
            self.waker.wake();
        }
    }

    fn park(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
        self.parked.store(true, Ordering::SeqCst);
    }
}

struct Shared<T> {
    /// Next slot the consumer reads. Written by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// Next slot the producer writes. Written by the producer only.
    tail: CachePadded<AtomicUsize>,
    consumer: CachePadded<Side>,
    producer: CachePadded<Side>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: a slot is touched by exactly one side at a time: the producer writes
// slots in `tail..head + capacity`, the consumer reads slots in `head..tail`,
// and the Release/Acquire pairs on `tail` and `head` hand each slot over.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above; `Shared` is only reached through one `Producer` and one
// `Consumer`, each of which is `Send` but used from one thread at a time.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, index: usize) -> *mut MaybeUninit<T> {
        self.slots[index % self.capacity()].get()
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for index in head..tail {
            // SAFETY: both ends are gone (we hold the last reference) and the
            // slots in `head..tail` hold initialised items nobody read.
            unsafe { (*self.slot(index)).assume_init_drop() };
        }
    }
}

/// Creates a ring of `capacity` slots.
///
/// # Panics
/// If `capacity` is zero.
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(capacity > 0, "a ring needs at least one slot");
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        consumer: CachePadded::new(Side::new()),
        producer: CachePadded::new(Side::new()),
        slots,
    });
    let producer = Producer {
        shared: shared.clone(),
        tail: 0,
        head_cached: 0,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        tail_cached: 0,
    };
    (producer, consumer)
}

/// The writing end of a ring.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: usize,
    head_cached: usize,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

impl<T> Producer<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    fn has_room(&mut self) -> bool {
        if self.tail - self.head_cached < self.capacity() {
            return true;
        }
        self.head_cached = self.shared.head.load(Ordering::Acquire);
        self.tail - self.head_cached < self.capacity()
    }

    /// Pushes `item` if there is room, waking the consumer if it is parked.
    pub fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        if self.shared.consumer.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
        if !self.has_room() {
            return Err(PushError::Full(item));
        }
        // SAFETY: `has_room` proved the slot at `tail` was read (or never
        // written), and only the producer writes slots.
        unsafe { (*self.shared.slot(self.tail)).write(item) };
        self.tail += 1;
        self.shared.tail.store(self.tail, Ordering::Release);
        self.shared.consumer.wake_if_parked();
        Ok(())
    }

    /// Waits until there is room for one item (or the consumer is gone).
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_room() || self.shared.consumer.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.shared.producer.park(cx);
        // Re-check after announcing: the consumer may have popped in between.
        self.head_cached = self.shared.head.load(Ordering::SeqCst);
        let room = self.tail - self.head_cached < self.capacity();
        if room || self.shared.consumer.closed.load(Ordering::SeqCst) {
            self.shared.producer.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Pushes `item`, waiting while the ring is full: this wait is
    /// backpressure. Fails only when the consumer is gone.
    pub async fn push(&mut self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut value = item.take().expect("polled after completion");
            loop {
                match self.try_push(value) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(PushError::Closed(value)) => return Poll::Ready(Err(value)),
                    Err(PushError::Full(back)) => value = back,
                }
                if self.poll_room(cx).is_pending() {
                    item = Some(value);
                    return Poll::Pending;
                }
            }
        })
        .await
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.producer.closed.store(true, Ordering::Release);
        self.shared.consumer.wake_if_parked();
    }
}

/// The reading end of a ring.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: usize,
    tail_cached: usize,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .finish()
    }
}

impl<T> Consumer<T> {
    /// Items waiting in the ring, as last seen by the consumer.
    pub fn len(&mut self) -> usize {
        self.tail_cached = self.shared.tail.load(Ordering::Acquire);
        self.tail_cached - self.head
    }

    /// Whether the ring is empty, as last seen by the consumer.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Pops the oldest item, if any, waking the producer if it is parked.
    pub fn try_pop(&mut self) -> Option<T> {
        if self.head == self.tail_cached {
            self.tail_cached = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.tail_cached {
                return None;
            }
        }
        // SAFETY: `head < tail`, so the producer initialised this slot and
        // published it with the Release store on `tail` we acquired.
        let item = unsafe { (*self.shared.slot(self.head)).assume_init_read() };
        self.head += 1;
        self.shared.head.store(self.head, Ordering::Release);
        self.shared.producer.wake_if_parked();
        Some(item)
    }

    /// Polls for the next item. `Ready(None)` means the producer is gone and
    /// every item it pushed has been read.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.try_pop() {
            return Poll::Ready(Some(item));
        }
        if self.shared.producer.closed.load(Ordering::Acquire) {
            return Poll::Ready(self.try_pop());
        }
        self.shared.consumer.park(cx);
        // Re-check after announcing: the producer may have pushed in between.
        self.tail_cached = self.shared.tail.load(Ordering::SeqCst);
        let closed = self.shared.producer.closed.load(Ordering::SeqCst);
        if self.head != self.tail_cached || closed {
            self.shared.consumer.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(self.try_pop());
        }
        Poll::Pending
    }

    /// Waits for the next item; `None` once the producer is gone and the
    /// ring is drained.
    pub async fn pop(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_pop(cx)).await
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer.closed.store(true, Ordering::Release);
        self.shared.producer.wake_if_parked();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let (mut producer, mut consumer) = ring::<u32>(3);
        for value in 0..3 {
            producer.try_push(value).unwrap();
        }
        assert_eq!(producer.try_push(9), Err(PushError::Full(9)));
        assert_eq!(consumer.try_pop(), Some(0));
        producer.try_push(3).unwrap();
        assert_eq!(consumer.len(), 3);
        let drained: Vec<u32> = std::iter::from_fn(|| consumer.try_pop()).collect();
        assert!(consumer.is_empty());
        assert_eq!(drained, vec![1, 2, 3]);
        assert_eq!(consumer.try_pop(), None);
    }

    #[test]
    fn closed_consumer_refuses_pushes() {
        let (mut producer, consumer) = ring::<u32>(2);
        drop(consumer);
        assert_eq!(producer.try_push(1), Err(PushError::Closed(1)));
    }

    #[test]
    fn undelivered_items_are_dropped_once() {
        let item = Arc::new(());
        let (mut producer, consumer) = ring(4);
        producer.try_push(item.clone()).unwrap();
        producer.try_push(item.clone()).unwrap();
        drop(producer);
        drop(consumer);
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
