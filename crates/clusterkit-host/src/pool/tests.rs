//! The dispatcher driven through a socket pair, with a service whose calls
//! are 9-byte records: key, id, kind (all little-endian). A reply is the
//! call's id, 4 bytes, buffered until a flush.

use super::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicUsize;

/// A call whose reply is written at once.
const QUICK: u8 = 0;
/// A call that blocks until the test opens the gate.
const BLOCKS: u8 = 1;
/// A quick call that runs outside its key's queue.
const ALONE: u8 = 2;
/// A call that panics (and so leaves no reply).
const PANICS: u8 = 3;

/// Generous: only a broken dispatcher ever waits this long.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Recorder {
    out: Mutex<Option<(UnixStream, Vec<u8>)>>,
    writes: AtomicUsize,
    gate: Mutex<bool>,
    gate_opened: Condvar,
    /// (key, id) in the order the calls ran.
    ran: Mutex<Vec<(u32, u32)>>,
}

impl Recorder {
    fn open_gate(&self) {
        *self.gate.lock().unwrap() = true;
        self.gate_opened.notify_all();
    }
}

struct Call {
    key: u32,
    id: u32,
    kind: u8,
}

struct Input {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl Service for Arc<Recorder> {
    type Job = Call;
    type Input = Input;

    fn read(&self, input: &mut Input, arrivals: &mut Arrivals<Call>) -> bool {
        let mut chunk = [0u8; 4096];
        while arrivals.is_empty() {
            let n = match input.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            input.pending.extend_from_slice(&chunk[..n]);
            let whole = input.pending.len() / 9 * 9;
            for record in input.pending[..whole].chunks_exact(9) {
                let call = Call {
                    key: u32::from_le_bytes(record[..4].try_into().unwrap()),
                    id: u32::from_le_bytes(record[4..8].try_into().unwrap()),
                    kind: record[8],
                };
                if call.kind == ALONE {
                    arrivals.alone(call);
                } else {
                    arrivals.queue(call.key, call);
                }
            }
            input.pending.drain(..whole);
        }
        true
    }

    fn run(&self, call: Call) {
        match call.kind {
            BLOCKS => {
                let mut open = self.gate.lock().unwrap();
                while !*open {
                    open = self.gate_opened.wait(open).unwrap();
                }
            }
            PANICS => panic!("a call that panics (expected by the test)"),
            _ => {}
        }
        self.ran.lock().unwrap().push((call.key, call.id));
        if let Some((_, buffer)) = self.out.lock().unwrap().as_mut() {
            buffer.extend_from_slice(&call.id.to_le_bytes());
        }
    }

    fn flush(&self) {
        if let Some((stream, buffer)) = self.out.lock().unwrap().as_mut()
            && !buffer.is_empty()
        {
            stream.write_all(buffer).unwrap();
            self.writes.fetch_add(1, Ordering::Relaxed);
            buffer.clear();
        }
    }
}

/// The test's end of the socket, the service, and the serving thread.
struct Harness {
    host: UnixStream,
    recorder: Arc<Recorder>,
    serving: std::thread::JoinHandle<()>,
}

fn start(stall_limit: Duration) -> Harness {
    let (host, monitor) = UnixStream::pair().unwrap();
    host.set_read_timeout(Some(ARRIVAL_DEADLINE)).unwrap();
    let recorder = Arc::new(Recorder::default());
    *recorder.out.lock().unwrap() = Some((monitor.try_clone().unwrap(), Vec::new()));
    let input = Input {
        stream: monitor,
        pending: Vec::new(),
    };
    let dispatcher = Dispatcher::new(recorder.clone(), input, stall_limit);
    let serving = std::thread::spawn(move || dispatcher.serve());
    Harness {
        host,
        recorder,
        serving,
    }
}

impl Harness {
    /// Sends `calls` in one write.
    fn send(&mut self, calls: &[(u32, u32, u8)]) {
        let mut bytes = Vec::new();
        for &(key, id, kind) in calls {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.push(kind);
        }
        self.host.write_all(&bytes).unwrap();
    }

    /// The next `count` replies' ids, waiting at most [`ARRIVAL_DEADLINE`].
    fn replies(&mut self, count: usize) -> Vec<u32> {
        let mut bytes = vec![0u8; count * 4];
        self.host
            .read_exact(&mut bytes)
            .expect("replies arrive (the read times out after a minute)");
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// Ends the input and waits for the dispatcher to run out.
    fn finish(self) -> Arc<Recorder> {
        self.recorder.open_gate();
        drop(self.host);
        self.serving.join().unwrap();
        self.recorder
    }
}

#[test]
fn calls_to_one_key_run_in_order_across_reads() {
    let mut harness = start(STALL_LIMIT);
    let mut id = 0;
    for _ in 0..20 {
        let batch: Vec<_> = (0..10)
            .map(|_| {
                id += 1;
                (id % 4, id, QUICK)
            })
            .collect();
        harness.send(&batch);
    }
    let mut replies = harness.replies(200);
    replies.sort_unstable();
    assert_eq!(replies, (1..=200).collect::<Vec<_>>());
    let recorder = harness.finish();
    let mut per_key: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(key, id) in recorder.ran.lock().unwrap().iter() {
        per_key.entry(key).or_default().push(id);
    }
    for (key, ids) in per_key {
        assert!(ids.is_sorted(), "key {key} ran out of order: {ids:?}");
    }
}

#[test]
fn the_replies_of_one_pass_go_out_in_one_write() {
    // A stall limit the test never reaches: only the end of the pass flushes.
    let mut harness = start(Duration::from_secs(3600));
    let batch: Vec<_> = (1..=50).map(|id| (id % 7, id, QUICK)).collect();
    harness.send(&batch);
    assert_eq!(harness.replies(50).len(), 50);
    let recorder = harness.finish();
    assert_eq!(recorder.writes.load(Ordering::Relaxed), 1);
}

#[test]
fn a_hung_call_holds_back_neither_reading_nor_the_other_replies() {
    let mut harness = start(STALL_LIMIT);
    // Key 2's reply is buffered before key 1's call hangs the thread that
    // read them; key 3's call is ready behind it.
    harness.send(&[(2, 1, QUICK), (1, 2, BLOCKS), (3, 3, QUICK)]);
    let mut first = harness.replies(2);
    first.sort_unstable();
    assert_eq!(first, [1, 3]);
    // Reading goes on: a later call to another key is answered.
    harness.send(&[(4, 4, QUICK)]);
    assert_eq!(harness.replies(1), [4]);
    // A call to the hung key waits its turn; one outside the queue does not.
    harness.send(&[(1, 5, QUICK), (1, 6, ALONE)]);
    assert_eq!(harness.replies(1), [6]);
    harness.recorder.open_gate();
    let mut rest = harness.replies(2);
    rest.sort_unstable();
    assert_eq!(rest, [2, 5]);
    let recorder = harness.finish();
    let key_one: Vec<u32> = recorder
        .ran
        .lock()
        .unwrap()
        .iter()
        .filter(|&&(key, id)| key == 1 && id != 6)
        .map(|&(_, id)| id)
        .collect();
    assert_eq!(key_one, [2, 5]);
}

#[test]
fn a_call_that_panics_does_not_wedge_its_queue() {
    let mut harness = start(STALL_LIMIT);
    harness.send(&[(1, 1, PANICS), (1, 2, QUICK), (2, 3, QUICK)]);
    let mut replies = harness.replies(2);
    replies.sort_unstable();
    assert_eq!(replies, [2, 3]);
    harness.finish();
}
