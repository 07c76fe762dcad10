//! A body written to its file with as few system calls as the data allows,
//! and without copying it.
//!
//! The HTTP client hands a body over in chunks that it has already
//! allocated. [`BodyWriter`] keeps them, rather than copying them into a
//! buffer, and writes what it holds with one vectored call (`writev`) once
//! it holds [`FLUSH_AT`] bytes or [`MAX_CHUNKS`] chunks, and at the end: a
//! flag (12 KiB on average, 36 KiB at most in the data set) is one call.

use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Bytes held before they are written.
pub const FLUSH_AT: usize = 64 * 1024;

/// Chunks held before they are written: a server that sends a body a few
/// bytes at a time cannot make the writer hold more than this many.
pub const MAX_CHUNKS: usize = 64;

/// Writes a body's chunks to `W`, [`FLUSH_AT`] bytes at a time.
#[derive(Debug)]
pub struct BodyWriter<W: Write> {
    out: W,
    chunks: Vec<Bytes>,
    held: usize,
}

impl<W: Write> BodyWriter<W> {
    /// A writer into `out`, holding nothing yet.
    pub fn new(out: W) -> Self {
        Self { out, chunks: Vec::new(), held: 0 }
    }

    /// Takes `chunk`, and writes what is held if that is enough.
    pub fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.held += chunk.len();
        self.chunks.push(chunk);
        if self.held >= FLUSH_AT || self.chunks.len() >= MAX_CHUNKS { self.write_held() } else { Ok(()) }
    }

    /// Writes what is held and gives the file back.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_held()?;
        Ok(self.out)
    }

    fn write_held(&mut self) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self.chunks.iter().map(|chunk| IoSlice::new(chunk)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.out.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut rest, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.chunks.clear();
        self.held = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each call; accepts at most `limit` bytes per call.
    struct Recorder {
        data: Vec<u8>,
        calls: usize,
        limit: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut written = 0;
            for buf in bufs {
                let n = buf.len().min(self.limit - written);
                self.data.extend_from_slice(&buf[..n]);
                written += n;
            }
            Ok(written)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn write_in_chunks(data: &[u8], chunk: usize, limit: usize) -> Recorder {
        let mut writer = BodyWriter::new(Recorder { data: Vec::new(), calls: 0, limit });
        for piece in data.chunks(chunk) {
            writer.push(Bytes::copy_from_slice(piece)).expect("a recorder never fails");
        }
        writer.finish().expect("a recorder never fails")
    }

    #[test]
    fn a_flag_is_one_call_whatever_its_chunks() {
        let data = body(36 * 1024);
        for chunk in [36 * 1024, 8192, 1000] {
            let out = write_in_chunks(&data, chunk, usize::MAX);
            assert_eq!(out.data, data, "chunks of {chunk}");
            assert_eq!(out.calls, 1, "chunks of {chunk}");
        }
    }

    #[test]
    fn large_or_finely_chunked_bodies_are_written_as_they_come() {
        let data = body(FLUSH_AT * 3 + 5);
        let out = write_in_chunks(&data, 16 * 1024, usize::MAX);
        assert_eq!(out.data, data);
        assert_eq!(out.calls, 4);
        let out = write_in_chunks(&body(MAX_CHUNKS * 2), 1, usize::MAX);
        assert_eq!(out.calls, 2, "at most MAX_CHUNKS chunks are held");
    }

    #[test]
    fn short_writes_are_continued_where_they_stopped() {
        let data = body(20_000);
        let out = write_in_chunks(&data, 3000, 4097);
        assert_eq!(out.data, data);
        assert_eq!(out.calls, 20_000_usize.div_ceil(4097));
    }

    #[test]
    fn an_empty_body_writes_nothing() {
        let out = write_in_chunks(&[], 1, usize::MAX);
        assert_eq!((out.data.len(), out.calls), (0, 0));
    }
}
