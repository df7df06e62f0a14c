//! Reading the file itself: opening it at the position, reading chunks
//! into the buffer, and checking that a followed file did not shrink.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};

use super::FileSource;
use crate::limits::{FILE_CHUNK_BYTES, FILE_LINE_MAX_BYTES};

impl FileSource {
    /// Opens the file at `offset`; `false` when following a file that does
    /// not exist yet.
    pub(super) fn open(&mut self) -> Result<bool, String> {
        let path = self.path.display();
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound && self.follow => return Ok(false),
            Err(error) => return Err(format!("cannot open {path}: {error}")),
        };
        let len = file
            .metadata()
            .map_err(|error| format!("cannot read the size of {path}: {error}"))?
            .len();
        if len < self.offset {
            return Err(format!(
                "{path} has {len} bytes, fewer than the position {} to resume from: \
                 the file was truncated or replaced",
                self.offset
            ));
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|error| format!("cannot seek in {path}: {error}"))?;
        self.file = Some(file);
        Ok(true)
    }

    /// Reads one chunk after the buffered bytes; returns the bytes read.
    pub(super) fn fill(&mut self) -> Result<usize, String> {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        if self.buffer.len() > FILE_LINE_MAX_BYTES {
            return Err(format!(
                "{}: the line at byte {} is longer than {FILE_LINE_MAX_BYTES} bytes",
                self.path.display(),
                self.offset
            ));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(0);
        };
        let start = self.buffer.len();
        self.buffer.resize(start + FILE_CHUNK_BYTES, 0);
        let read = loop {
            match file.read(&mut self.buffer[start..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buffer.truncate(start);
                    return Err(format!("cannot read {}: {error}", self.path.display()));
                }
            }
        };
        self.buffer.truncate(start + read);
        Ok(read)
    }

    /// Fails when the followed file is now shorter than what was read.
    pub(super) fn check_not_shrunk(&self) -> Result<(), String> {
        let read_to = self.offset + (self.buffer.len() - self.consumed) as u64;
        let len = std::fs::metadata(&self.path)
            .map_err(|error| format!("cannot read the size of {}: {error}", self.path.display()))?
            .len();
        if len < read_to {
            return Err(format!(
                "{} shrank to {len} bytes after {read_to} were read: \
                 truncation and rotation are not supported",
                self.path.display()
            ));
        }
        Ok(())
    }
}
