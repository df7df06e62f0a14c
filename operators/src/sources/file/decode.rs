//! Turning one line into a row or a dead letter: the [`Decoder`].

use super::config::FileFormat;
use super::FileItem;
#[cfg(doc)]
use super::FileSource;
use crate::row::{json_object_into, Row, Type, Value};

/// Turns lines into rows: everything [`FileSource::read`] changes besides
/// the buffer, so both can be borrowed at once.
#[derive(Debug)]
pub(super) struct Decoder {
    pub(super) format: FileFormat,
    pub(super) fields: Vec<(String, Type)>,
    pub(super) time_index: Option<usize>,
    pub(super) row: Row,
    pub(super) dead: Row,
    pub(super) max_ts: Option<i64>,
    pub(super) dead_letters: u64,
}

impl Decoder {
    /// Decodes `line` (without its line break) that starts at `offset`.
    pub(super) fn line(&mut self, line: &[u8], offset: u64, emit: &mut impl FnMut(FileItem<'_>)) {
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        if offset == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        let result = match self.format {
            FileFormat::Lines => match std::str::from_utf8(line) {
                Ok(text) => {
                    set_str(&mut self.row.values[0], text);
                    Ok(())
                }
                Err(_) => Err("not valid UTF-8".to_owned()),
            },
            FileFormat::Ndjson => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                self.json(line)
            }
        };
        match result {
            Ok(()) => {
                if let Some(Value::Timestamp(ts)) = self.time_index.map(|i| &self.row.values[i]) {
                    self.max_ts = Some(self.max_ts.map_or(*ts, |max| max.max(*ts)));
                }
                emit(FileItem::Row(&self.row));
            }
            Err(error) => {
                self.dead_letters += 1;
                let text = String::from_utf8_lossy(line);
                set_str(&mut self.dead.values[0], &text);
                set_str(&mut self.dead.values[1], &error);
                self.dead.values[2] = Value::Int(i64::try_from(offset).unwrap_or(i64::MAX));
                emit(FileItem::DeadLetter(&self.dead));
            }
        }
    }

    /// Fills the row from a JSON object line.
    fn json(&mut self, line: &[u8]) -> Result<(), String> {
        json_object_into(line, &self.fields, &mut self.row.values)
    }
}

fn set_str(value: &mut Value, text: &str) {
    match value {
        Value::String(target) => {
            target.clear();
            target.push_str(text);
        }
        other => *other = Value::String(text.to_owned()),
    }
}
