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

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// How long a test waits for its executor's work: it takes milliseconds.
const WATCHDOG: Duration = Duration::from_secs(20);

/// An executor running one test's work, and the work's result to come.
struct Running<T: Send + 'static> {
    finished: mpsc::Receiver<T>,
    executor: ExecutorJoinHandle<()>,
}

/// Runs `work` on a new unbound executor whose preempt interval is
/// `preempt`.
fn spawn<T, F>(preempt: Duration, work: impl FnOnce() -> F + Send + 'static) -> Running<T>
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    let (done, finished) = mpsc::channel();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(preempt)
        .spawn(move || async move {
            let result = work().await;
            done.send(result).expect("the test waits");
        })
        .expect("executor starts");
    Running { finished, executor }
}

impl<T: Send + 'static> Running<T> {
    /// The work's result; fails the test with `stuck` after [`WATCHDOG`].
    fn wait(self, stuck: &str) -> T {
        let result = self.finished.recv_timeout(WATCHDOG).expect(stuck);
        self.executor.join().expect("executor ends");
        result
    }
}

/// Spins until glommio asks the task to yield, then yields; `times` times.
async fn yield_when_preempted(times: usize) {
    for _ in 0..times {
        while !glommio::executor().need_preempt() {
            std::hint::spin_loop();
        }
        futures_lite::future::yield_now().await;
    }
}

#[test]
fn an_executor_with_runnable_tasks_does_not_park() {
    spawn(Duration::from_nanos(1), || async {
        for _ in 0..20_000 {
            futures_lite::future::yield_now().await;
        }
    })
    .wait("the executor parked with a runnable task and never woke");
}

/// The patched reactor keeps an armed preempt timer across turns instead of
/// re-arming it on each; preemption must still come, turn after turn. A
/// task spins until glommio asks it to yield, then yields, 200 times (with
/// a 1 ms preempt interval, about 0.2 s); a timer that was kept after it
/// fired would leave `need_preempt` false and the task spinning until the
/// watchdog fails the test.
#[test]
fn preemption_still_comes_on_every_turn() {
    let took = spawn(Duration::from_millis(1), || async {
        let started = std::time::Instant::now();
        yield_when_preempted(200).await;
        started.elapsed()
    })
    .wait("a task spinning for preemption was never preempted");
    eprintln!("200 preemptions in {took:?}");
}

/// The timer kept across turns must be a preempt timer, never the user
/// timer armed for a sleep. Here the executor sleeps with a 60 s user timer
/// armed (another task's `sleep`) until a foreign wake, then a task spins
/// for preemption 50 times; were the 60 s timer kept as the preempt timer,
/// the first spin would outlast the watchdog.
#[test]
fn a_sleep_timer_is_not_taken_for_a_preempt_timer() {
    let (mut go, mut go_rx) = weir_runtime::ring::ring::<()>(1);
    let running = spawn(Duration::from_millis(1), move || async move {
        let sleeper = glommio::spawn_local(glommio::timer::sleep(Duration::from_secs(60)));
        go_rx.pop().await.expect("the test sends");
        yield_when_preempted(50).await;
        drop(sleeper);
    });
    // Let the executor go to sleep with the 60 s timer armed.
    std::thread::sleep(Duration::from_millis(100));
    futures_lite::future::block_on(go.push(())).expect("executor alive");
    running.wait("the spinning task was not preempted within 20 s");
}
