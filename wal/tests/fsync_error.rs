//! An injected fdatasync error (fsyncgate): the appends waiting on it fail,
//! later appends are refused, and nothing is reported durable that was not.
//! Checked for the threaded `Wal` and for `SyncLog`.

mod common;

use common::{small_config, storage};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use weir_wal::{AppendError, Lsn, MemStorage, RecordType, SyncLog, Wal};

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn wal_fsync_error_is_fatal() {
    let mem = MemStorage::new(512, 3);
    let (wal, _) = Wal::open(storage(&mem), &small_config()).expect("open");
    let a = wal.append(RecordType::INPUT, 1, b"a").expect("append");
    wal.wait_durable(a).expect("a durable");
    assert!(wal.is_durable(a).expect("no failure"));
    let durable_before = wal.durable_lsn();
    assert_eq!(durable_before, Lsn(a.0 + 1));

    mem.fail_sync_at(mem.syncs());
    let b = wal.append(RecordType::INPUT, 1, b"b").expect("append");
    let c = wal.append(RecordType::INPUT, 1, b"c").expect("append");
    let mut fut_c = Box::pin(wal.durable(c));
    let waker = Waker::from(Arc::new(Noop));
    // Registered before the failure: must complete with the error.
    let _ = fut_c.as_mut().poll(&mut Context::from_waker(&waker));
    let err_b = wal.wait_durable(b).expect_err("b must fail");
    assert!(err_b.message.contains("write at offset"), "{err_b}");
    match fut_c.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Err(e)) => assert_eq!(e, err_b),
        other => panic!("c not failed: {other:?}"),
    }
    assert_eq!(
        wal.durable_lsn(),
        durable_before,
        "nothing more reported durable"
    );
    assert!(wal.is_durable(b).is_err());
    match wal.append(RecordType::INPUT, 1, b"d") {
        Err(AppendError::Failed(f)) => assert_eq!(f, err_b),
        other => panic!("append after failure: {other:?}"),
    }
    // The storage works again, but the log must not retry into success.
    wal.flush();
    assert_eq!(wal.failure(), Some(err_b.clone()));
    assert_eq!(wal.durable_lsn(), durable_before);
    assert_eq!(wal.close(), Err(err_b));
}

#[test]
fn sync_log_fsync_error_is_fatal() {
    let mem = MemStorage::new(4096, 4);
    let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("open");
    log.append(RecordType::INPUT, 1, b"a").expect("append");
    assert_eq!(log.commit(), Ok(Lsn(1)));
    mem.fail_sync_at(mem.syncs());
    log.append(RecordType::INPUT, 1, b"b").expect("append");
    let e = log.commit().expect_err("commit must fail");
    assert_eq!(log.durable(), Lsn(1));
    assert!(matches!(
        log.append(RecordType::INPUT, 1, b"c"),
        Err(AppendError::Failed(_))
    ));
    assert_eq!(log.commit(), Err(e), "a later commit must not succeed");
    assert_eq!(log.durable(), Lsn(1));
}

#[test]
fn failed_roll_is_fatal() {
    // The first sync of the very first segment (its header) fails.
    let mem = MemStorage::new(512, 5);
    mem.fail_sync_at(0);
    let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("open");
    log.append(RecordType::INPUT, 1, b"a").expect("append");
    assert!(log.commit().is_err());
    assert_eq!(log.durable(), Lsn(0));
}
