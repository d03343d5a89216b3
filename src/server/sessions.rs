//! The server's sessions: a table from id to the runtime's [`Session`]
//! handle and the defaults the session's calls use when a request names
//! none (pool, affinity).
//!
//! Sessions opened over gRPC are the runtime's explicit kind: they live
//! until ReleaseSession or until they go unused for the session TTL, not as
//! long as some connection. An id that is unknown, released or expired is
//! `session_not_found`, never opened again behind the client's back. A
//! session the embedding Rust code opened is found too (with no defaults).
//! Entries of sessions that end elsewhere (TTL, a release from Rust) are
//! dropped as their `snakepit.session.lifecycle.released` events arrive.
//!
//! An FFI request without a session runs in a session of its own
//! ([`SessionTable::one_shot`]), released when the request is over.
//!
//! Called by the RPC handlers (`service.rs`); the event loop runs with the
//! server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{Affinity, Error, Event, Session, Snakepit};

/// A live session and its defaults.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) session: Session,
    /// The pool its calls use when they name none (unset: the default pool).
    pub(crate) pool: Option<String>,
    /// The affinity its calls use when they name none (unset: the pool's).
    pub(crate) affinity: Option<Affinity>,
}

/// What CreateSession asks for.
pub(crate) struct NewSession {
    /// Empty: the server picks one.
    pub(crate) id: String,
    pub(crate) pool: Option<String>,
    pub(crate) affinity: Option<Affinity>,
    pub(crate) metadata: Vec<(String, String)>,
}

/// The table.
pub(crate) struct SessionTable {
    snakepit: Snakepit,
    entries: Mutex<HashMap<String, Entry>>,
}

impl SessionTable {
    pub(crate) fn new(snakepit: Snakepit) -> Self {
        Self {
            snakepit,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().expect("session table lock")
    }

    /// Opens a session (or returns the live one of that id, its metadata
    /// merged). An empty id gets a random one, hard to guess: the id is all
    /// a client needs to use a session.
    pub(crate) async fn create(&self, new: NewSession) -> Result<Entry, Error> {
        if let Some(pool) = &new.pool {
            self.snakepit.pool(pool)?;
        }
        let id = if new.id.is_empty() {
            format!("s-{:032x}", rand::random::<u128>())
        } else {
            new.id
        };
        let existing = self.entries().get(&id).cloned();
        let entry = match existing.filter(|e| e.session.is_live()) {
            Some(entry) => entry,
            None => {
                let entry = Entry {
                    session: self.snakepit.session(&id).await?,
                    pool: new.pool,
                    affinity: new.affinity,
                };
                self.entries().insert(id, entry.clone());
                entry
            }
        };
        for (key, value) in new.metadata {
            entry.session.set_metadata(key, value)?;
        }
        Ok(entry)
    }

    /// The live session `id`.
    pub(crate) async fn get(&self, id: &str) -> Result<Entry, Error> {
        if id.is_empty() {
            return Err(Error::SessionNotFound(String::new()));
        }
        let known = self.entries().get(id).cloned();
        match known {
            Some(entry) if entry.session.is_live() => return Ok(entry),
            Some(_) => {
                self.forget(id);
                return Err(Error::SessionNotFound(id.to_string()));
            }
            None => {}
        }
        // One the embedding code opened: served with no defaults.
        let entry = Entry {
            session: self.snakepit.lookup_session(id).await?,
            pool: None,
            affinity: None,
        };
        self.entries().insert(id.to_string(), entry.clone());
        Ok(entry)
    }

    /// Releases the session `id` on every worker that ran it.
    pub(crate) async fn release(&self, id: &str) -> Result<(), Error> {
        let entry = self.get(id).await?;
        self.forget(id);
        entry.session.release().await
    }

    /// A session for one FFI request, released when its last handle goes
    /// (callers release it as soon as the request is over).
    pub(crate) async fn one_shot(&self) -> Result<Session, Error> {
        self.snakepit.new_session().await
    }

    /// The name of the pool the session's calls use when they name none.
    pub(crate) fn pool_of(&self, entry: &Entry) -> String {
        entry
            .pool
            .clone()
            .unwrap_or_else(|| self.snakepit.default_pool().name().to_string())
    }

    fn forget(&self, id: &str) {
        self.entries().remove(id);
    }

    /// Drops the entries of sessions that are over.
    fn sweep(&self) {
        self.entries().retain(|_, e| e.session.is_live());
    }
}

/// Drops the table's entries of sessions as they end, until the telemetry
/// hub closes (the server stops it sooner).
pub(crate) async fn forget_ended(table: Arc<SessionTable>, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(Event::SessionReleased(released)) => table.forget(&released.session_id),
            Ok(_) => {}
            // Some ends went unseen: look at every entry.
            Err(broadcast::error::RecvError::Lagged(_)) => table.sweep(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
