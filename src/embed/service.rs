//! [`Service`]: a started pipeline running in the background, its
//! shutdown and the wait for its end.

use std::thread::JoinHandle;

use weir_runtime::{Error, RunReport};

use super::handle::Handle;
#[cfg(doc)]
use super::Pipeline;

/// A pipeline running in the background, from [`Pipeline::start`]. Dropping
/// it shuts the pipeline down gracefully and waits for it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// # let mut pipeline = weir::Pipeline::new(runtime);
/// # let input = pipeline.input("numbers", |n: &u64| *n);
/// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
/// let service: weir::Service = pipeline.start()?;
/// let handle = service.handle();
/// handle.push_blocking(&input, 1)?;
/// let report = service.shutdown()?;
/// # let _ = report;
/// # Ok(()) }
/// ```
pub struct Service {
    pub(super) handle: Handle,
    pub(super) waiter: Option<JoinHandle<Result<RunReport, weir_runtime::RunError>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Service {
    /// A handle for pushing, querying and subscribing from any thread.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// std::thread::spawn(move || handle.push_blocking(&input, 1)).join().unwrap()?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Shuts down gracefully and waits: inputs take no more records, what
    /// they queued goes through the pipeline, sinks flush and, with a data
    /// directory, a final epoch commits that keeps every operator's state
    /// as it is (open windows stay open), so the next start goes on as if
    /// never stopped. Without a data directory every node finishes
    /// instead (windows fire), as [`shutdown_and_drain`](Service::shutdown_and_drain)
    /// does. Returns the run's report, or its failure.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// service.shutdown()?;
    /// let refused = handle.try_push(&input, 1).unwrap_err();
    /// assert!(matches!(refused, weir::PushError::Closed(1)));
    /// # Ok(()) }
    /// ```
    pub fn shutdown(mut self) -> Result<RunReport, Error> {
        self.handle.shutdown();
        self.join()
    }

    /// Shuts down as the end of input and waits, like Flink's
    /// `stop --drain`: inputs take no more records, what they queued goes
    /// through, then every operator finishes (every open window fires and
    /// its rows reach the subscribers and sinks). With a data directory the
    /// run is then complete: a later start on it runs nothing. Use
    /// [`shutdown`](Service::shutdown) to stop a service that starts again.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// service.handle().push_blocking(&input, 1)?;
    /// let report = service.shutdown_and_drain()?;
    /// assert!(!report.stopped);
    /// # Ok(()) }
    /// ```
    pub fn shutdown_and_drain(mut self) -> Result<RunReport, Error> {
        self.handle.control.shutdown(true);
        self.join()
    }

    /// Waits for the run to end by itself (every input shut down through a
    /// [`Handle`], or a failure).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// std::thread::spawn(move || handle.shutdown());
    /// service.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self) -> Result<RunReport, Error> {
        self.join()
    }

    fn join(&mut self) -> Result<RunReport, Error> {
        let Some(waiter) = self.waiter.take() else {
            return Err(Error::Run(weir_runtime::RunError::Coordinator(
                "the run was already waited for".into(),
            )));
        };
        match waiter.join() {
            Ok(result) => result.map_err(Error::Run),
            Err(_) => Err(Error::Run(weir_runtime::RunError::Coordinator(
                "the thread waiting for the run panicked".into(),
            ))),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.handle.shutdown();
            if let Err(error) = self.join() {
                tracing::error!(%error, "the embedded pipeline failed");
            }
        }
    }
}
