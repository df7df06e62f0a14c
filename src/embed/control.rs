//! What every [`Handle`] of a run shares ([`Control`]): the inputs to drain
//! and the queries and subscriptions to close when the run ends, and the
//! shutdown that stops the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event as Notify;
use weir_runtime::Record;

use super::input::InputShared;
use super::query::QueryShared;
use super::subscribe::SubscriptionShared;
#[cfg(doc)]
use super::{Handle, Service};

/// Something to close when the run ends.
pub(super) trait Close: Send + Sync {
    fn close(&self);
}

impl<K: Send + 'static, A: Send + 'static> Close for QueryShared<K, A> {
    fn close(&self) {
        QueryShared::close(self);
    }
}

impl<T: Record + Send> Close for SubscriptionShared<T> {
    fn close(&self) {
        SubscriptionShared::close(self);
    }
}

/// An input, as shutdown sees it.
pub(super) trait Drain: Send + Sync {
    fn close(&self);
    fn wait_drained(&self, timeout: Duration) -> bool;
    fn release(&self);
    fn name(&self) -> &str;
}

impl<T: Send> Drain for InputShared<T> {
    fn close(&self) {
        InputShared::close(self);
    }

    fn wait_drained(&self, timeout: Duration) -> bool {
        InputShared::wait_drained(self, timeout)
    }

    fn release(&self) {
        InputShared::release(self);
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// How long shutdown waits for inputs to hand on what was queued before it
/// stops the other sources anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What every [`Handle`] of a run shares.
pub(super) struct Control {
    pub(super) stop: weir_runtime::Handle,
    pub(super) inputs: Vec<Arc<dyn Drain>>,
    pub(super) closers: Vec<Arc<dyn Close>>,
    pub(super) shutting_down: AtomicBool,
    pub(super) finished: AtomicBool,
    pub(super) finished_event: Notify,
    pub(super) failure: Mutex<Option<String>>,
}

impl Control {
    /// The run ended: nothing more is taken or answered.
    pub(super) fn finish(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        for closer in &self.closers {
            closer.close();
        }
        // Closes each input (if shutdown did not) and drops what it queued.
        for input in &self.inputs {
            input.release();
        }
        self.finished.store(true, Ordering::Release);
        self.finished_event.notify(usize::MAX);
    }

    /// Starts the shutdown: a stop with a savepoint, or with `drain` the
    /// end of input (see [`Service::shutdown_and_drain`]).
    pub(super) fn shutdown(self: &Arc<Self>, drain: bool) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        if !drain {
            // Whatever ends the run now, a data directory's next run
            // resumes it, with every operator's state as it is.
            self.stop.keep_resumable();
        }
        for input in &self.inputs {
            input.close();
        }
        // Inputs hand on what they hold, then the other sources stop. Off
        // the caller's thread: shutdown may be asked from anywhere.
        let control = self.clone();
        let stopper = move || {
            for input in &control.inputs {
                if !input.wait_drained(DRAIN_TIMEOUT) {
                    tracing::warn!(
                        input = input.name(),
                        "input still had records queued after the drain timeout"
                    );
                }
            }
            if drain {
                control.stop.shutdown_and_drain();
            } else {
                control.stop.shutdown();
            }
        };
        if std::thread::Builder::new()
            .name("weir-embedded-stop".into())
            .spawn(stopper)
            .is_err()
        {
            if drain {
                self.stop.shutdown_and_drain();
            } else {
                self.stop.shutdown();
            }
        }
    }
}
