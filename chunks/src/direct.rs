//! Writing a file around the page cache (`O_DIRECT`), from aligned buffers
//! reused file after file, written out by a thread of their own while the next
//! is filled ([`Pipeline`]); ordinary writes where the file system refuses it.
//!
//! Why: pack files and large restored files are written once and not read soon.
//! Through the page cache each of their pages is first allocated and copied into
//! (on a virtual machine, fresh pages are the dearest part of a write: measured
//! here, 1.4 s of kernel time per 512 MiB written and flushed, against 0.2 s
//! direct), and then evicts pages that other work was using. Durability is
//! unchanged: the caller still flushes (fsync, syncfs), which now has only the
//! metadata and the device's cache to flush.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{mpsc, Arc};

/// Alignment of the buffer, the offsets and the lengths of direct writes: the
/// page size, a multiple of every common logical block size.
pub const ALIGN: usize = 4096;

/// A buffer whose start is aligned to [`ALIGN`], of a fixed capacity.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `cap` bytes (rounded up to a multiple of [`ALIGN`]).
    pub fn new(cap: usize) -> AlignedBuf {
        let cap = cap.max(ALIGN).div_ceil(ALIGN) * ALIGN;
        let raw = vec![0u8; cap + ALIGN];
        // The Vec is never grown, so its start, and this offset, stay put.
        let start = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf {
            raw,
            start,
            cap,
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The filled part padded with zeros to a multiple of [`ALIGN`].
    fn padded(&mut self) -> &[u8] {
        let end = self.len.div_ceil(ALIGN) * ALIGN;
        self.raw[self.start + self.len..self.start + end].fill(0);
        &self.raw[self.start..self.start + end]
    }

    /// Reads `len` bytes of `file` from `offset` into the buffer, fewer at the
    /// end of the file: its length is what was read. Direct when `file` is, then
    /// `offset` and `len` must be multiples of [`ALIGN`].
    pub fn read_at(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        assert!(len <= self.cap, "a read larger than the buffer");
        self.len = 0;
        while self.len < len {
            let at = self.start + self.len;
            match file.read_at(
                &mut self.raw[at..self.start + len],
                offset + self.len as u64,
            ) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copies in as much of `data` as fits; how much that was.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len);
        let at = self.start + self.len;
        self.raw[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.filled()
    }
}

/// Buffers for [`DirectWriter`]s, one file after another, and who writes them
/// out: the caller itself (`depth` 0), or a thread of the pipeline's own, so
/// that the caller fills the next buffer while the device takes the last ones
/// (up to `depth` writes in flight).
pub struct Pipeline {
    free: Vec<AlignedBuf>,
    /// To the writing thread, and back from it: each buffer once written.
    jobs: Option<mpsc::Sender<Job>>,
    done: Option<mpsc::Receiver<(AlignedBuf, io::Result<()>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
    /// The first failed write since the last [`Pipeline::wait_all`].
    failed: Option<io::Error>,
}

/// One buffer to write at `offset` of `file` (its filled bytes, padded when direct).
struct Job {
    file: Arc<File>,
    offset: u64,
    buf: AlignedBuf,
    direct: bool,
}

impl Pipeline {
    /// `depth + 1` buffers of `cap` bytes; `depth` writes in flight at most.
    pub fn new(cap: usize, depth: usize) -> Pipeline {
        let free = (0..=depth).map(|_| AlignedBuf::new(cap)).collect();
        let mut p = Pipeline {
            free,
            jobs: None,
            done: None,
            thread: None,
            in_flight: 0,
            failed: None,
        };
        if depth > 0 {
            let (jobs, todo) = mpsc::channel::<Job>();
            let (back, done) = mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("bcm-writeback".into())
                .spawn(move || {
                    for mut job in todo {
                        let wrote = write_out(&job.file, &mut job.buf, job.offset, job.direct);
                        // The file is the writer's again before it hears back.
                        drop(job.file);
                        if back.send((job.buf, wrote)).is_err() {
                            break;
                        }
                    }
                })
                .expect("a thread can be started");
            (p.jobs, p.done, p.thread) = (Some(jobs), Some(done), Some(thread));
        }
        p
    }

    /// An empty buffer: a free one, or the next one written back.
    fn take(&mut self) -> io::Result<AlignedBuf> {
        if self.free.is_empty() {
            self.wait_one();
        }
        let mut buf = self.free.pop().expect("a buffer came back");
        buf.len = 0;
        match self.failed.take() {
            Some(e) => {
                self.free.push(buf);
                Err(e)
            }
            None => Ok(buf),
        }
    }

    fn wait_one(&mut self) {
        let done = self
            .done
            .as_ref()
            .expect("buffers are out only when threaded");
        let (buf, wrote) = done
            .recv()
            .expect("the writing thread lives as long as the pipeline");
        self.in_flight -= 1;
        self.free.push(buf);
        if let Err(e) = wrote {
            self.failed.get_or_insert(e);
        }
    }

    /// Writes `buf` out, now or on the writing thread.
    fn submit(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        mut buf: AlignedBuf,
        direct: bool,
    ) -> io::Result<()> {
        // Writes through the page cache only copy: not worth a hand-over.
        match self.jobs.as_ref().filter(|_| direct) {
            Some(jobs) => {
                let job = Job {
                    file: file.clone(),
                    offset,
                    buf,
                    direct,
                };
                jobs.send(job)
                    .expect("the writing thread lives as long as the pipeline");
                self.in_flight += 1;
                Ok(())
            }
            None => {
                let wrote = write_out(file, &mut buf, offset, direct);
                self.free.push(buf);
                wrote
            }
        }
    }

    /// Waits for every write handed over; the first that failed.
    fn wait_all(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.wait_one();
        }
        self.failed.take().map_or(Ok(()), Err)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.wait_all();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a buffer at `offset`: padded to [`ALIGN`] when `direct` (the file is
/// cut back to its length at the end); a file whose device refuses the direct
/// write (blocks larger than [`ALIGN`]) goes on through the page cache.
fn write_out(file: &File, buf: &mut AlignedBuf, offset: u64, direct: bool) -> io::Result<()> {
    if direct {
        match file.write_all_at(buf.padded(), offset) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => stop_direct(file)?,
            done => return done,
        }
    }
    file.write_all_at(buf.filled(), offset)
}

fn stop_direct(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an open descriptor; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new file written from its start to its end, direct when it can be.
pub struct DirectWriter<'p> {
    /// Shared with the writing thread while a write of it is under way.
    file: Option<Arc<File>>,
    pipeline: &'p mut Pipeline,
    buf: Option<AlignedBuf>,
    /// Bytes handed over to be written so far (a multiple of [`ALIGN`]).
    offset: u64,
    direct: bool,
}

impl<'p> DirectWriter<'p> {
    /// Creates `path`, which must not exist, to write through `pipeline`;
    /// `direct` false writes through the page cache (small files, where one
    /// device write each would cost more than the copy).
    pub fn create_new(
        path: &Path,
        pipeline: &'p mut Pipeline,
        direct: bool,
    ) -> io::Result<DirectWriter<'p>> {
        let open = |flags: i32| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = if direct {
            match open(libc::O_DIRECT) {
                Ok(f) => (f, true),
                // tmpfs and a few others refuse O_DIRECT at open.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
                Err(e) => return Err(e),
            }
        } else {
            (open(0)?, false)
        };
        let buf = pipeline.take()?;
        Ok(DirectWriter {
            file: Some(Arc::new(file)),
            pipeline,
            buf: Some(buf),
            offset: 0,
            direct,
        })
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let buf = self.buf.as_mut().expect("a writer holds a buffer");
            let n = buf.fill(data);
            data = &data[n..];
            if buf.len == buf.cap {
                let full = self.buf.take().expect("a writer holds a buffer");
                let offset = self.offset;
                self.offset += full.len as u64;
                let file = self.file.as_ref().expect("a writer holds its file");
                self.pipeline.submit(file, offset, full, self.direct)?;
                self.buf = Some(self.pipeline.take()?);
            }
        }
        Ok(())
    }

    /// Writes what is left, waits for every write, and gives the file its exact
    /// length; the file, to set its metadata and flush. Not durable until the
    /// caller flushes it.
    pub fn finish(mut self) -> io::Result<(File, u64)> {
        let last = self.buf.take().expect("a writer holds a buffer");
        let len = self.offset + last.len as u64;
        let padded = self.direct && !last.len.is_multiple_of(ALIGN);
        if last.len > 0 {
            let file = self.file.as_ref().expect("a writer holds its file");
            self.pipeline.submit(file, self.offset, last, self.direct)?;
        } else {
            self.pipeline.free.push(last);
        }
        self.pipeline.wait_all()?;
        let file = self.file.take().expect("a writer holds its file");
        // Every write is back: the writing thread let go of the file.
        let file = Arc::try_unwrap(file).expect("no write of the file is under way");
        if padded {
            file.set_len(len)?;
        }
        Ok((file, len))
    }
}

impl Drop for DirectWriter<'_> {
    /// A writer given up on (an error on the way): its buffer goes back, and no
    /// write of its file is left under way.
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pipeline.free.push(buf);
        }
        if self.file.is_some() {
            let _ = self.pipeline.wait_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn files_of_every_awkward_length_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for depth in [0, 1, 3] {
            let mut pipeline = Pipeline::new(3 * ALIGN, depth);
            for (i, len) in [0, 1, 4095, 4096, 4097, 12288, 12289, 50_000]
                .into_iter()
                .enumerate()
            {
                for direct in [true, false] {
                    let path = dir.path().join(format!("f{i}-{direct}-{depth}"));
                    let data = pattern(len);
                    let mut w = DirectWriter::create_new(&path, &mut pipeline, direct).unwrap();
                    // In uneven pieces, across the buffer's edge.
                    for piece in data.chunks(1000) {
                        w.write_all(piece).unwrap();
                    }
                    let (f, written) = w.finish().unwrap();
                    f.sync_all().unwrap();
                    assert_eq!(written, len as u64);
                    let back = std::fs::read(&path).unwrap();
                    assert_eq!(back, data, "{len} bytes, {direct}, depth {depth}");
                }
            }
        }
    }

    #[test]
    fn a_writer_given_up_on_leaves_the_pipeline_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut pipeline = Pipeline::new(ALIGN, 2);
        for i in 0..5 {
            let mut w = DirectWriter::create_new(
                &dir.path().join(format!("dropped{i}")),
                &mut pipeline,
                true,
            )
            .unwrap();
            w.write_all(&pattern(3 * ALIGN + 5)).unwrap();
            drop(w);
        }
        let path = dir.path().join("kept");
        let mut w = DirectWriter::create_new(&path, &mut pipeline, true).unwrap();
        w.write_all(&pattern(10_000)).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), pattern(10_000));
    }

    #[test]
    fn a_file_system_without_direct_writes_gets_ordinary_ones() {
        // tmpfs refuses O_DIRECT at open.
        if !Path::new("/dev/shm").is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("f");
        let mut pipeline = Pipeline::new(ALIGN, 1);
        let data = pattern(10_000);
        let mut w = DirectWriter::create_new(&path, &mut pipeline, true).unwrap();
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn an_existing_file_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("there");
        std::fs::write(&path, b"keep").unwrap();
        let mut pipeline = Pipeline::new(ALIGN, 0);
        assert!(DirectWriter::create_new(&path, &mut pipeline, true).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }

    #[test]
    fn the_buffer_starts_aligned() {
        for cap in [1, ALIGN, 5 * ALIGN + 3] {
            let mut b = AlignedBuf::new(cap);
            assert_eq!(b.padded().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.cap % ALIGN, 0);
        }
    }
}
