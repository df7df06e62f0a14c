//! `Expr::test` allocates nothing per record: a counting global allocator
//! (this file's alone) counts the allocations made on this thread while a
//! typical condition runs over many archived rows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_operators::expr::{Expr, Scratch};
use weir_operators::row::{ArchivedRow, Ip, Row, Schema, Type, Value};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Set once the thread-locals above are usable from the allocator.
static READY: AtomicBool = AtomicBool::new(false);

fn note() {
    if READY.load(Ordering::Relaxed) && COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    READY.store(true, Ordering::Relaxed);
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    f();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<IpAddr>().unwrap()))
}

#[test]
fn test_does_not_allocate_per_record() {
    let schema = Schema::new([
        ("status", Type::Int),
        ("path", Type::String),
        ("method", Type::String),
        ("agent", Type::String),
        ("latency", Type::Float),
        ("client", Type::Ip),
        ("ts", Type::Timestamp),
        ("start", Type::Timestamp),
        ("user", Type::String),
    ]);
    let condition = Expr::compile_condition(
        "status >= 500 and status % 100 != 7 \
         and (contains(path, \"/api/\") || starts_with(path, \"/v2\")) \
         and ends_with(path, \"s\") \
         and lower(method) == \"get\" \
         and matches(agent, \"(?i)bot|crawler\") \
         and cidr_contains(\"10.0.0.0/8\", client) \
         and not cidr_contains(\"2001:db8::/32\", client) \
         and latency * 2 + 1 > 3.5 \
         and ts - start <= 5m and ts + 1h > \"2026-01-01T00:00:00Z\" \
         and (is_null(user) or len(user) > 2)",
        &schema,
    )
    .unwrap();

    let rows: Vec<Row> = (0..64)
        .map(|i| Row {
            values: vec![
                Value::Int(500 + i % 4),
                Value::String(format!("/api/v1/item{}", if i % 3 == 0 { "" } else { "s" })),
                Value::String(if i % 5 == 0 { "POST" } else { "GeT" }.into()),
                Value::String(if i % 7 == 0 { "curl" } else { "Googlebot/2.1" }.into()),
                Value::Float(1.0 + i as f64),
                if i % 11 == 0 {
                    ip("192.168.1.1")
                } else {
                    ip("10.20.30.40")
                },
                Value::Timestamp(1_795_701_900_000),
                Value::Timestamp(1_795_701_900_000 - 1000 * i),
                if i % 2 == 0 {
                    Value::Null
                } else {
                    Value::String("alice".into())
                },
            ],
        })
        .collect();
    let archives: Vec<_> = rows
        .iter()
        .map(|row| rkyv::to_bytes::<rkyv::rancor::Error>(row).unwrap())
        .collect();
    let archived: Vec<&ArchivedRow> = archives
        .iter()
        .map(|bytes| rkyv::access::<ArchivedRow, rkyv::rancor::Error>(bytes).unwrap())
        .collect();

    // The expected answers, from the rows themselves.
    let expected: Vec<bool> = (0..64i64)
        .map(|i| i % 3 != 0 && i % 5 != 0 && i % 7 != 0 && i % 11 != 0)
        .collect();

    // The first pass grows the scratch buffers and the regex's cache.
    let mut scratch = Scratch::default();
    let first: Vec<bool> = archived
        .iter()
        .map(|row| condition.test(row, &mut scratch))
        .collect();
    assert_eq!(first, expected);
    assert!(first.iter().any(|passed| *passed) && first.iter().any(|passed| !*passed));

    let mut passed = 0usize;
    let count = allocations(|| {
        for _ in 0..100 {
            for row in &archived {
                passed += usize::from(condition.test(row, &mut scratch));
            }
        }
    });
    assert_eq!(
        passed,
        100 * expected.iter().filter(|passed| **passed).count()
    );
    assert_eq!(count, 0, "Expr::test allocated {count} times");

    // The counter works: evaluating to an owned string allocates.
    let to_owned = Expr::compile("lower(path)", &schema).unwrap();
    let count = allocations(|| {
        std::hint::black_box(to_owned.eval(archived[0], &mut scratch));
    });
    assert!(count > 0, "the counting allocator saw nothing");
}
