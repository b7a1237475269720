//! A `StatusSink` for tests of pending operations.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit::{Error, Reply, ResourceState, StatusSink};

/// The end of a pending operation, as a test receives it.
pub type Completion = Result<ResourceState, Error>;

/// Records what a pending operation reports, answers every report with a
/// fixed [`Reply`], and hands the operation's end to a channel.
#[derive(Debug)]
pub struct Recorder {
    /// `(state, checkpoint)` of every report, in order.
    pub reports: Mutex<Vec<(ResourceState, u32)>>,
    done: Mutex<mpsc::Sender<Completion>>,
    reply: Reply,
}

/// A recorder answering `reply`, and the receiver of its completion.
pub fn recorder(reply: Reply) -> (Arc<Recorder>, mpsc::Receiver<Completion>) {
    let (tx, rx) = mpsc::channel();
    let recorder = Arc::new(Recorder {
        reports: Mutex::default(),
        done: Mutex::new(tx),
        reply,
    });
    (recorder, rx)
}

impl StatusSink for Recorder {
    fn report(&self, state: ResourceState, checkpoint: u32, _wait_hint: Duration) -> Reply {
        self.reports.lock().unwrap().push((state, checkpoint));
        self.reply
    }

    fn complete(&self, outcome: Completion) {
        let _ = self.done.lock().unwrap().send(outcome);
    }
}
