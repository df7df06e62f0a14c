//! What an ingest source logs for an accepted batch: one intake record
//! per batch, a [`DataHeader`] followed by the batch's payload as the
//! client sent it (an rkyv archive, NDJSON or a JSON array).

use super::Encoding;

/// Bytes of a [`DataHeader`].
pub(crate) const DATA_HEADER_LEN: usize = 18;

/// What an intake record holds before the batch's payload. Layout
/// (little-endian, 18 bytes): encoding u8, has-id u8, batch id u64, accept
/// time u64 (ns since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataHeader {
    pub(super) encoding: Encoding,
    pub(super) batch_id: Option<u64>,
    pub(super) accepted_ns: u64,
}

impl DataHeader {
    pub(super) fn encode(&self) -> [u8; DATA_HEADER_LEN] {
        let mut bytes = [0u8; DATA_HEADER_LEN];
        bytes[0] = self.encoding as u8;
        bytes[1] = self.batch_id.is_some() as u8;
        bytes[2..10].copy_from_slice(&self.batch_id.unwrap_or(0).to_le_bytes());
        bytes[10..18].copy_from_slice(&self.accepted_ns.to_le_bytes());
        bytes
    }

    /// The header and the payload of an intake record.
    pub(super) fn decode(data: &[u8]) -> Result<(DataHeader, &[u8]), String> {
        if data.len() < DATA_HEADER_LEN {
            return Err(format!(
                "intake record of {} bytes is too short",
                data.len()
            ));
        }
        let encoding = Encoding::from_u8(data[0])
            .ok_or_else(|| format!("intake record has unknown encoding {}", data[0]))?;
        let id = u64::from_le_bytes(data[2..10].try_into().expect("8 bytes"));
        let header = DataHeader {
            encoding,
            batch_id: (data[1] != 0).then_some(id),
            accepted_ns: u64::from_le_bytes(data[10..18].try_into().expect("8 bytes")),
        };
        Ok((header, &data[DATA_HEADER_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_headers_round_trip() {
        for header in [
            DataHeader {
                encoding: Encoding::Ndjson,
                batch_id: Some(7),
                accepted_ns: 123,
            },
            DataHeader {
                encoding: Encoding::Wire,
                batch_id: None,
                accepted_ns: 5,
            },
        ] {
            let mut data = header.encode().to_vec();
            data.extend_from_slice(b"{}");
            assert_eq!(DataHeader::decode(&data).unwrap(), (header, &b"{}"[..]));
            assert!(DataHeader::decode(&data[..3]).is_err());
        }
    }
}
