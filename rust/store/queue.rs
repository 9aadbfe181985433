//! Durable appends that never block the caller: the store's asynchronous face.
//!
//! An event loop cannot wait in `fdatasync`, and handing each record to a
//! thread that needs the interpreter lock to report back makes the loop and
//! that thread fight over the lock. A [`DurableQueue`] takes records without
//! blocking ([`DurableQueue::submit`] returns a ticket), makes them durable on
//! its own writer thread in batches (one write and one `fdatasync` for all
//! records waiting), and reports finished tickets through an `eventfd` that
//! the loop watches: the writer never touches the caller's runtime.
//!
//! Tickets are numbered in submission order and a batch is always a
//! contiguous range of them, so completions are reported as ranges.
//!
//! A record nobody waits for (a tool's outcome, after the allow that let it
//! run is durable) can be submitted lazily: it does not wake the writer, but
//! rides with the next batch someone waits for, or is written on its own
//! [`LAZY_WRITE_DELAY`] later. Each `fdatasync` costs the machine tens of
//! microseconds of CPU, so at high call rates this halves their number.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags};

use super::error::{Result, StoreError};
use super::Store;

/// Records written with one durable append at most.
pub const MAX_BATCH: usize = 1024;
/// Bytes of records waiting to be written at most (INV-07: bounded memory).
/// A submit beyond it is refused, and the refused call is denied.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// How long a lazily submitted record may wait for a batch to join.
pub const LAZY_WRITE_DELAY: Duration = Duration::from_millis(10);

/// Where a queue writes: the store, or a stand-in in tests.
pub trait RecordSink: Send + Sync + 'static {
    /// Appends `records` as one batch and returns once they are durable, or fails for all of them;
    /// returns the position of the first (as [`Store::append_many`] does).
    fn append_many(&self, records: &[&[u8]]) -> Result<u64>;
}

impl RecordSink for Store {
    fn append_many(&self, records: &[&[u8]]) -> Result<u64> {
        Store::append_many(self, records)
    }
}

/// Tickets `first..=last` finished with `result`.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The first ticket of the range.
    pub first: u64,
    /// The last ticket of the range (inclusive).
    pub last: u64,
    /// `Ok` when every record of the range is durable; else the store's error, the same for each of
    /// them.
    pub result: std::result::Result<(), StoreError>,
}

struct State {
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    /// Ticket of `pending[0]`.
    first_pending: u64,
    /// Some pending record has a waiter: write now, not after the lazy delay.
    urgent: bool,
    done: Vec<Completion>,
    closing: bool,
    /// Tickets below this are written or failed.
    written: u64,
    /// The writer has exited.
    stopped: bool,
    /// The writer sleeps on `work`; only then does a submit need to wake it
    /// (a wake-up is a system call; while it writes, records just queue).
    writer_idle: bool,
    /// The writer sleeps with no time-out (nothing pending for a while):
    /// even a lazy record must wake it then.
    writer_parked: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Signalled after each batch, for [`DurableQueue::flush`].
    progress: Condvar,
    ready: OwnedFd,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic the writer can meet
        // (appends run outside the lock), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self) {
        // Adds 1 to the eventfd counter; it only fails if the counter would
        // overflow, in which case the reader has been signalled already.
        let _ = rustix::io::write(&self.ready, &1u64.to_ne_bytes());
    }
}

/// A store's non-blocking durable append queue (see the module comment): records in, tickets out,
/// finished ranges reported through an eventfd.
pub struct DurableQueue {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl DurableQueue {
    /// A queue writing to `sink` on its own writer thread; fails only when the eventfd or the
    /// thread cannot be made. Tickets start at 0.
    pub fn new(sink: Arc<dyn RecordSink>) -> Result<DurableQueue> {
        let ready = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|err| StoreError::Invalid(format!("eventfd: {err}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_bytes: 0,
                first_pending: 0,
                urgent: false,
                done: Vec::new(),
                closing: false,
                written: 0,
                stopped: false,
                writer_idle: false,
                writer_parked: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            ready,
        });
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("vedette-evidence".into())
            .spawn(move || write_loop(&for_writer, &*sink))
            .map_err(|err| StoreError::Invalid(format!("evidence writer thread: {err}")))?;
        Ok(DurableQueue {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `record` to be written now; returns its ticket. Refused once the
    /// queue is closing or when [`MAX_PENDING_BYTES`] would be exceeded.
    pub fn submit(&self, record: Vec<u8>) -> Result<u64> {
        self.enqueue(record, true)
    }

    /// Queues `record` to be written with the next batch, or within
    /// [`LAZY_WRITE_DELAY`]; returns its ticket. Refused like [`submit`](Self::submit).
    pub fn submit_lazy(&self, record: Vec<u8>) -> Result<u64> {
        self.enqueue(record, false)
    }

    /// Has what is queued written now (lazy records included). An event loop
    /// submits its records lazily and commits once per turn: one wake-up of
    /// the writer for all the records of the turn instead of one per record.
    pub fn commit(&self) {
        let mut st = self.shared.lock();
        if st.pending.is_empty() {
            return;
        }
        st.urgent = true;
        let wake = std::mem::take(&mut st.writer_idle);
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }

    fn enqueue(&self, record: Vec<u8>, urgent: bool) -> Result<u64> {
        let mut st = self.shared.lock();
        if st.closing {
            return Err(StoreError::Closed);
        }
        if st.pending_bytes.saturating_add(record.len()) > MAX_PENDING_BYTES {
            return Err(StoreError::Invalid(format!(
                "evidence queue full: {} bytes already wait for the disk",
                st.pending_bytes
            )));
        }
        let ticket = st.first_pending + st.pending.len() as u64;
        st.pending_bytes += record.len();
        st.pending.push(record);
        if urgent {
            st.urgent = true;
        } else if !st.writer_parked {
            return Ok(ticket); // the writer finds it at the latest after its delay
        }
        let wake = std::mem::take(&mut st.writer_idle);
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(ticket)
    }

    /// The eventfd that becomes readable when completions are waiting.
    pub fn ready(&self) -> BorrowedFd<'_> {
        self.shared.ready.as_fd()
    }

    /// [`DurableQueue::ready`] as a raw descriptor, for an event loop to watch; valid while the
    /// queue lives.
    pub fn ready_fd(&self) -> RawFd {
        self.ready().as_raw_fd()
    }

    /// Completions since the last call, oldest first; resets the eventfd.
    pub fn take_completed(&self) -> Vec<Completion> {
        let mut counter = [0u8; 8];
        // EAGAIN (nothing signalled yet) is expected and harmless.
        let _ = rustix::io::read(&self.shared.ready, &mut counter);
        std::mem::take(&mut self.shared.lock().done)
    }

    /// Blocks until every record submitted before the call is written (or failed;
    /// the failure is reported with its ticket as usual).
    pub fn flush(&self) {
        let mut st = self.shared.lock();
        let target = st.first_pending + st.pending.len() as u64;
        if st.written < target {
            st.urgent = true; // lazy records too
            self.shared.work.notify_one();
        }
        while st.written < target && !st.stopped {
            st = self
                .shared
                .progress
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes everything queued, then stops the writer. Idempotent.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            // The writer catches panics from the sink; a join error would mean
            // the loop itself failed, and there is nothing left to stop then.
            let _ = writer.join();
        }
    }
}

impl Drop for DurableQueue {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(shared: &Shared, sink: &dyn RecordSink) {
    loop {
        let mut st = shared.lock();
        // After a batch the writer waits LAZY_WRITE_DELAY for the next one
        // (lazy records arriving meanwhile need no wake-up); only when that
        // passes with nothing queued does it park until woken.
        let mut quiet = false;
        while !st.urgent && !st.closing {
            st.writer_idle = true;
            if quiet && st.pending.is_empty() {
                st.writer_parked = true;
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                st.writer_parked = false;
                quiet = false;
                continue;
            }
            let (guard, waited) = shared
                .work
                .wait_timeout(st, LAZY_WRITE_DELAY)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            if waited.timed_out() {
                if !st.pending.is_empty() {
                    break; // lazy records waited long enough: write them
                }
                quiet = true;
            }
        }
        st.writer_idle = false;
        if st.pending.is_empty() {
            st.stopped = true; // closing, and everything is written
            drop(st);
            shared.progress.notify_all();
            return;
        }
        let take = st.pending.len().min(MAX_BATCH);
        let batch: Vec<Vec<u8>> = st.pending.drain(..take).collect();
        // What is left over a full batch is written next, without delay.
        st.urgent = !st.pending.is_empty();
        let first = st.first_pending;
        st.first_pending += take as u64;
        st.pending_bytes -= batch.iter().map(Vec::len).sum::<usize>();
        drop(st);

        let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let result = match catch_unwind(AssertUnwindSafe(|| sink.append_many(&slices))) {
            Ok(outcome) => outcome.map(|_| ()),
            // A panic must not stop the writer: every later waiter would hang.
            Err(panic) => Err(StoreError::Failed(format!(
                "the store panicked: {}",
                panic_message(&panic)
            ))),
        };
        let mut st = shared.lock();
        st.done.push(Completion {
            first,
            last: first + take as u64 - 1,
            result,
        });
        st.written = first + take as u64;
        drop(st);
        shared.progress.notify_all();
        shared.signal();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    struct Counting(AtomicUsize);

    impl RecordSink for Counting {
        fn append_many(&self, records: &[&[u8]]) -> Result<u64> {
            Ok(self.0.fetch_add(records.len(), Ordering::SeqCst) as u64)
        }
    }

    /// Panics on every batch that holds a record starting with `!`.
    struct Panicky;

    impl RecordSink for Panicky {
        fn append_many(&self, records: &[&[u8]]) -> Result<u64> {
            assert!(!records.iter().any(|r| r.starts_with(b"!")), "bad record");
            Ok(0)
        }
    }

    fn wait_for(queue: &DurableQueue, tickets: u64) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        while all
            .iter()
            .map(|c: &Completion| c.last - c.first + 1)
            .sum::<u64>()
            < tickets
        {
            assert!(Instant::now() < deadline, "completions did not arrive");
            all.extend(queue.take_completed());
            std::thread::sleep(Duration::from_millis(1));
        }
        all
    }

    #[test]
    fn tickets_complete_in_contiguous_ranges() {
        let sink = Arc::new(Counting(AtomicUsize::new(0)));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        for i in 0..3000u64 {
            assert_eq!(queue.submit(vec![1; 10]).unwrap(), i);
        }
        let done = wait_for(&queue, 3000);
        let mut next = 0;
        for completion in &done {
            assert_eq!(completion.first, next);
            assert!(completion.last - completion.first < MAX_BATCH as u64);
            assert!(completion.result.is_ok());
            next = completion.last + 1;
        }
        assert_eq!(sink.0.load(Ordering::SeqCst), 3000);
    }

    /// Records the size of every batch it is given.
    struct Batches(Mutex<Vec<usize>>);

    impl RecordSink for Batches {
        fn append_many(&self, records: &[&[u8]]) -> Result<u64> {
            self.0.lock().unwrap().push(records.len());
            Ok(0)
        }
    }

    #[test]
    fn lazy_records_ride_with_the_next_urgent_one() {
        let sink = Arc::new(Batches(Mutex::new(Vec::new())));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        assert_eq!(queue.submit_lazy(b"outcome 1".to_vec()).unwrap(), 0);
        assert_eq!(queue.submit_lazy(b"outcome 2".to_vec()).unwrap(), 1);
        assert_eq!(queue.submit(b"decision".to_vec()).unwrap(), 2);
        let done = wait_for(&queue, 3);
        assert_eq!((done[0].first, done[0].last), (0, 2));
        assert_eq!(*sink.0.lock().unwrap(), vec![3]);
    }

    #[test]
    fn commit_writes_lazy_records_without_waiting_out_the_delay() {
        let sink = Arc::new(Batches(Mutex::new(Vec::new())));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        queue.commit(); // nothing queued: nothing written
        for _ in 0..5 {
            queue.submit_lazy(b"decision".to_vec()).unwrap();
        }
        let started = Instant::now();
        queue.commit();
        let done = wait_for(&queue, 5);
        assert!(started.elapsed() < LAZY_WRITE_DELAY * 50); // not a timing claim: no hang
        assert_eq!((done[0].first, done.last().unwrap().last), (0, 4));
        assert_eq!(sink.0.lock().unwrap().iter().sum::<usize>(), 5);
    }

    #[test]
    fn lazy_records_alone_are_written_after_the_delay() {
        let sink = Arc::new(Batches(Mutex::new(Vec::new())));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        // Long enough for the writer to park: the lazy record must wake it.
        std::thread::sleep(LAZY_WRITE_DELAY * 3);
        queue.submit_lazy(b"outcome".to_vec()).unwrap();
        let done = wait_for(&queue, 1);
        assert!(done[0].result.is_ok());
        assert_eq!(*sink.0.lock().unwrap(), vec![1]);
        // flush and close do not wait out the delay's worth of lazy records either.
        queue.submit_lazy(b"outcome".to_vec()).unwrap();
        queue.flush();
        assert_eq!(*sink.0.lock().unwrap(), vec![1, 1]);
        queue.submit_lazy(b"outcome".to_vec()).unwrap();
        queue.close();
        assert_eq!(*sink.0.lock().unwrap(), vec![1, 1, 1]);
    }

    #[test]
    fn a_panicking_sink_fails_its_batch_and_the_writer_survives() {
        let queue = DurableQueue::new(Arc::new(Panicky)).unwrap();
        queue.submit(b"!boom".to_vec()).unwrap();
        let first = wait_for(&queue, 1);
        let err = first[0].result.as_ref().unwrap_err().to_string();
        assert!(err.contains("the store panicked: bad record"), "{err}");
        queue.submit(b"fine".to_vec()).unwrap();
        let second = wait_for(&queue, 1);
        assert_eq!(second[0].first, 1);
        assert!(second[0].result.is_ok());
    }

    #[test]
    fn flush_returns_once_everything_submitted_is_written() {
        let sink = Arc::new(Counting(AtomicUsize::new(0)));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        for _ in 0..5000 {
            queue.submit(b"r".to_vec()).unwrap();
        }
        queue.flush();
        assert_eq!(sink.0.load(Ordering::SeqCst), 5000);
        queue.flush(); // nothing pending: returns at once
        queue.close();
        queue.flush(); // after close: returns, never hangs
    }

    #[test]
    fn close_writes_what_is_queued_and_refuses_more() {
        let sink = Arc::new(Counting(AtomicUsize::new(0)));
        let queue = DurableQueue::new(sink.clone()).unwrap();
        for _ in 0..100 {
            queue.submit(b"r".to_vec()).unwrap();
        }
        queue.close();
        assert_eq!(sink.0.load(Ordering::SeqCst), 100);
        assert!(matches!(
            queue.submit(b"late".to_vec()),
            Err(StoreError::Closed)
        ));
        queue.close();
    }

    #[test]
    fn the_pending_bound_refuses_instead_of_growing() {
        struct Stuck(Mutex<()>);
        impl RecordSink for Stuck {
            fn append_many(&self, _: &[&[u8]]) -> Result<u64> {
                let _held = self.0.lock().unwrap();
                Ok(0)
            }
        }
        let sink = Arc::new(Stuck(Mutex::new(())));
        let held = sink.0.lock().unwrap();
        let queue = DurableQueue::new(sink.clone()).unwrap();
        let big = MAX_PENDING_BYTES / 4;
        let mut refused = false;
        for _ in 0..8 {
            if let Err(err) = queue.submit(vec![0; big]) {
                assert!(err.to_string().contains("evidence queue full"), "{err}");
                refused = true;
                break;
            }
        }
        assert!(refused);
        drop(held);
        queue.close();
    }

    #[test]
    fn the_eventfd_is_readable_after_a_completion() {
        let queue = DurableQueue::new(Arc::new(Counting(AtomicUsize::new(0)))).unwrap();
        queue.submit(b"x".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut counter = [0u8; 8];
        loop {
            if rustix::io::read(queue.ready(), &mut counter).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "eventfd never became readable");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(u64::from_ne_bytes(counter), 1);
    }
}
