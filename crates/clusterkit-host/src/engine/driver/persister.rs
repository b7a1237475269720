//! Writing the state file off the engine thread. A write is a serialized
//! copy of every resource's persisted state, an `fsync`, a rename and the
//! old file's eviction: milliseconds for thousands of resources, during
//! which the engine would fire no deadline. The persister thread writes
//! one state at a time and reports how it went as a
//! [`Message::Persisted`]; the engine keeps only the newest state asked
//! for meanwhile. At a stop or an escalation the engine writes the last
//! state itself, after the write in flight (the file's lock orders them).

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use super::Message;
use super::poller::EngineSender;
use crate::state_file::{PersistedState, StateFile};

/// The persister thread's handle.
pub(crate) struct Persister {
    states: Sender<PersistedState>,
    file: Arc<Mutex<StateFile>>,
}

impl Persister {
    /// Starts the thread; it ends when the handle is dropped.
    pub(crate) fn start(file: StateFile, engine: EngineSender) -> std::io::Result<Persister> {
        let file = Arc::new(Mutex::new(file));
        let (states, rx) = mpsc::channel::<PersistedState>();
        let writer = file.clone();
        std::thread::Builder::new()
            .name("ck-persister".into())
            .spawn(move || {
                for state in rx {
                    let error = write(&writer, &state);
                    if engine.send(Message::Persisted(error)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Persister { states, file })
    }

    /// Writes `state` on the thread; its outcome comes back as a message.
    /// False if the thread is gone (the caller writes it itself).
    pub(crate) fn write_later(&self, state: PersistedState) -> Result<(), PersistedState> {
        self.states.send(state).map_err(|e| e.0)
    }

    /// Writes `state` now, after the write in flight if there is one.
    pub(crate) fn write_now(&self, state: &PersistedState) -> Option<String> {
        write(&self.file, state)
    }
}

/// Writes `state`; the problem, naming the file, if it could not.
fn write(file: &Mutex<StateFile>, state: &PersistedState) -> Option<String> {
    let file = file.lock().unwrap_or_else(PoisonError::into_inner);
    file.save(state).err().map(|e| {
        let path = file.path().display().to_string();
        tracing::error!(target: "clusterkit::host", "cannot write {path}: {e}");
        format!("{path}: {e}")
    })
}
