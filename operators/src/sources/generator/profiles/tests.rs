//! Unit tests of the generator's internals: calendar dates, stream counts
//! and Zipf picks.

use super::random::{Rng, Zipf};
use super::streams::Stream;
use super::web::civil_from_days;

#[test]
fn civil_dates_match_chrono() {
    for days in [0i64, 59, 60, 365, 10_957, 19_000, 20_454, 20_820, 50_000] {
        let date = chrono::DateTime::from_timestamp(days * 86_400, 0)
            .unwrap()
            .date_naive();
        let expected = (
            i64::from(chrono::Datelike::year(&date)),
            chrono::Datelike::month(&date),
            chrono::Datelike::day(&date),
        );
        assert_eq!(civil_from_days(days), expected, "day {days}");
    }
}

#[test]
fn stream_counts_agree_with_times() {
    for (base, rate) in [(0u64, 3u64), (1_000, 1_000), (7, 33_333), (5, 1)] {
        let stream = Stream {
            base_ms: base,
            per_second: rate,
            len: 5_000,
        };
        for t in base.saturating_sub(3)..base + 3_000 {
            let direct = (0..5_000).filter(|&k| stream.head(k) <= t).count() as u64;
            assert_eq!(stream.count_le(t), direct, "base {base} rate {rate} t {t}");
        }
    }
}

#[test]
fn zipf_picks_stay_in_range_and_favour_the_head() {
    let zipf = Zipf::new(100, 1.0);
    let mut rng = Rng(1);
    let mut counts = [0u32; 100];
    for _ in 0..100_000 {
        counts[zipf.pick(rng.next())] += 1;
    }
    assert!(counts[0] > counts[10] && counts[10] > counts[99]);
    assert_eq!(Zipf::new(1, 1.0).pick(u64::MAX), 0);
}
