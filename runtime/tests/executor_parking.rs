//! Goal: a glommio executor never parks while it has runnable tasks.
//!
//! glommio 0.9.0's executor loop installs a preempt timer, then runs the
//! task queues; if the timer fired in between (the thread was descheduled
//! past it), the loop ended before running anything and reported "nothing
//! ran", so the executor parked with runnable tasks and, with no timer or
//! foreign wake armed, slept for good. Shards hung this way under load
//! (`hang_stress.rs`). weir builds glommio from `third_party/glommio`, which
//! fixes this (see `third_party/glommio/WEIR-PATCH.md`).
//!
//! Method: a preempt timer of 1 ns makes the race the common case. One task
//! yields 20,000 times in a row; a yield needs no wake from outside, so the
//! run finishes only if the executor never parks with that task runnable.
//! A watchdog fails the test if it does not finish in 20 s (it takes
//! milliseconds). Before the fix this hung on the first try here.

use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

#[test]
fn an_executor_with_runnable_tasks_does_not_park() {
    let (done, finished) = mpsc::channel();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(Duration::from_nanos(1))
        .spawn(move || async move {
            for _ in 0..20_000 {
                futures_lite::future::yield_now().await;
            }
            done.send(()).expect("the test waits");
        })
        .expect("executor starts");
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the executor parked with a runnable task and never woke");
    executor.join().expect("executor ends");
}
