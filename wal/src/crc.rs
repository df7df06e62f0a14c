//! CRC32C (Castagnoli) of record frames, several records at a time.
//!
//! A record's CRC covers its header bytes 4..40 and then its payload (see
//! `docs/wal-format.md`). One CRC is a chain of dependent `crc32`
//! instructions (latency 3 cycles, throughput 1 per cycle on x86-64), so for
//! `append_batch` [`frame_crcs`] runs [`LANES`] records' chains interleaved,
//! which keeps the unit busy. Invariant: every function here returns exactly
//! `crc32c::crc32c_append(crc32c::crc32c(head), payload)` for each record
//! (checked against the `crc32c` crate by the tests below); without SSE4.2
//! it simply calls that crate.

use crate::limits::RECORD_HEADER_LEN;

/// Records whose CRCs [`frame_crcs`] computes together.
pub(crate) const LANES: usize = 4;

/// Bytes of a record header covered by its CRC (all but the CRC field).
pub(crate) const HEAD_LEN: usize = RECORD_HEADER_LEN - 4;

/// The CRC of one record: `head` is header bytes 4..40.
pub(crate) fn frame_crc(head: &[u8; HEAD_LEN], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), payload)
}

/// The CRCs of [`LANES`] records at once (same result as [`frame_crc`]).
pub(crate) fn frame_crcs(
    heads: &[[u8; HEAD_LEN]; LANES],
    payloads: [&[u8]; LANES],
) -> [u32; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE4.2 (checked just above).
        return unsafe { x86::frame_crcs(heads, payloads) };
    }
    std::array::from_fn(|i| frame_crc(&heads[i], payloads[i]))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{HEAD_LEN, LANES};
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

    fn word(b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    }

    /// # Safety
    /// The CPU must support SSE4.2.
    #[target_feature(enable = "sse4.2")]
    #[allow(unused_unsafe)] // the intrinsics are safe here on newer compilers
    pub(super) unsafe fn frame_crcs(
        heads: &[[u8; HEAD_LEN]; LANES],
        payloads: [&[u8]; LANES],
    ) -> [u32; LANES] {
        // SAFETY (every block below): SSE4.2 is enabled for this function.
        let mut c = [u64::from(u32::MAX); LANES];
        for w in 0..HEAD_LEN / 8 {
            for l in 0..LANES {
                c[l] = unsafe { _mm_crc32_u64(c[l], word(&heads[l], w * 8)) };
            }
        }
        let mut tail = [0u8; 4];
        for l in 0..LANES {
            tail.copy_from_slice(&heads[l][HEAD_LEN - 4..]);
            let v = u32::from_le_bytes(tail);
            c[l] = u64::from(unsafe { _mm_crc32_u32(c[l] as u32, v) });
        }
        let common = payloads.iter().map(|p| p.len()).min().unwrap_or(0) / 8 * 8;
        for at in (0..common).step_by(8) {
            for l in 0..LANES {
                c[l] = unsafe { _mm_crc32_u64(c[l], word(payloads[l], at)) };
            }
        }
        std::array::from_fn(|l| {
            let p = payloads[l];
            let mut crc = c[l];
            let mut at = common;
            while at + 8 <= p.len() {
                crc = unsafe { _mm_crc32_u64(crc, word(p, at)) };
                at += 8;
            }
            let mut crc = crc as u32;
            for &b in &p[at..] {
                crc = unsafe { _mm_crc32_u8(crc, b) };
            }
            !crc
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_matches_the_crc32c_crate() {
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for lens in [
            [0, 0, 0, 0],
            [100, 100, 100, 100],
            [1, 7, 8, 9],
            [300, 5, 64, 1023],
        ] {
            let heads: [[u8; HEAD_LEN]; LANES] =
                std::array::from_fn(|i| std::array::from_fn(|j| data[i * 50 + j]));
            let payloads: [&[u8]; LANES] = std::array::from_fn(|i| &data[i * 7..i * 7 + lens[i]]);
            let want: [u32; LANES] = std::array::from_fn(|i| {
                let mut all = heads[i].to_vec();
                all.extend_from_slice(payloads[i]);
                crc32c::crc32c(&all)
            });
            assert_eq!(frame_crcs(&heads, payloads), want, "lens {lens:?}");
            for i in 0..LANES {
                assert_eq!(frame_crc(&heads[i], payloads[i]), want[i]);
            }
        }
    }
}
