//! Goal: the ring loses nothing, duplicates nothing and keeps FIFO order
//! under a concurrent producer and consumer, including when either side has
//! to park and be woken by the other.
//!
//! Method: a producer thread pushes a long numbered sequence into a small
//! ring while a consumer thread pops it, both through the async API (so both
//! park when the ring is full or empty); items carry a drop counter so a
//! lost or doubly-dropped item is caught too. Rings are tiny to force
//! thousands of full/empty transitions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use futures_lite::future::block_on;
use weir_runtime::ring::{ring, PushError};

struct Counted {
    value: u64,
    drops: Arc<AtomicU64>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

fn transfer(items: u64, capacity: usize) {
    let drops = Arc::new(AtomicU64::new(0));
    let (mut producer, mut consumer) = ring::<Counted>(capacity);
    let producer_drops = drops.clone();
    let producer = thread::spawn(move || {
        block_on(async {
            for value in 0..items {
                let item = Counted {
                    value,
                    drops: producer_drops.clone(),
                };
                assert!(producer.push(item).await.is_ok(), "consumer vanished");
            }
        })
    });
    let consumer = thread::spawn(move || {
        block_on(async {
            let mut expected = 0;
            while let Some(item) = consumer.pop().await {
                assert_eq!(item.value, expected, "out of order or lost");
                expected += 1;
            }
            expected
        })
    });
    producer.join().expect("producer");
    let received = consumer.join().expect("consumer");
    assert_eq!(received, items);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        items,
        "an item was dropped twice or never"
    );
}

#[test]
fn one_slot_ring_moves_a_long_sequence_in_order() {
    transfer(200_000, 1);
}

#[test]
fn small_ring_moves_a_long_sequence_in_order() {
    transfer(1_000_000, 4);
}

#[test]
fn spinning_try_push_and_try_pop_agree_with_the_async_api() {
    let (mut producer, mut consumer) = ring::<u64>(8);
    let items = 500_000u64;
    let pusher = thread::spawn(move || {
        let mut value = 0;
        while value < items {
            match producer.try_push(value) {
                Ok(()) => value += 1,
                Err(PushError::Full(_)) => std::hint::spin_loop(),
                Err(PushError::Closed(_)) => panic!("consumer vanished"),
            }
        }
    });
    let mut expected = 0;
    while expected < items {
        if let Some(value) = consumer.try_pop() {
            assert_eq!(value, expected);
            expected += 1;
        }
    }
    pusher.join().expect("producer");
    assert_eq!(consumer.try_pop(), None);
}
