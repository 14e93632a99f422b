//! One side of a connection between hosts: a bounded queue of frames to send.
//!
//! A leaf of the module graph: the transport makes links and pumps them, the router
//! keeps them as routes, and the delivery port (`port`) names the link an
//! envelope arrived on, without any of them knowing the others.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{Error, Result};

/// Identities of links, never reused within a process.
static LINK_IDS: AtomicU64 = AtomicU64::new(1);

/// One side of a connection: a bounded queue of frames to send.
pub(crate) struct Link {
    id: u64,
    label: String,
    tx: mpsc::Sender<Message>,
    open: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Link {
    /// A link to the peer `label` (its URL or socket address) queueing at most
    /// `capacity` frames, and the receiving end its connection pumps.
    pub(crate) fn new(label: String, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Arc::new(Self {
                id: LINK_IDS.fetch_add(1, Ordering::Relaxed),
                label,
                tx,
                open: AtomicBool::new(true),
            }),
            rx,
        )
    }

    /// The link's identity: a refusal is only taken from the link its ask left on.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The peer, for logs.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) && !self.tx.is_closed()
    }

    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Relaxed);
    }

    /// Queues an envelope; waits while the queue is full.
    pub(crate) async fn send(&self, bytes: Vec<u8>) -> Result<()> {
        if !self.is_open() {
            return Err(self.closed());
        }
        self.tx
            .send(Message::Binary(bytes))
            .await
            .map_err(|_| self.closed())
    }

    /// Queues an envelope if there is room; fails at once when the queue is full.
    pub(crate) fn try_send(&self, bytes: Vec<u8>) -> Result<()> {
        if !self.is_open() {
            return Err(self.closed());
        }
        self.tx
            .try_send(Message::Binary(bytes))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Transport {
                    peer: self.label.clone(),
                    reason: "send queue full: the peer reads nothing; frame dropped".into(),
                },
                mpsc::error::TrySendError::Closed(_) => self.closed(),
            })
    }

    fn closed(&self) -> Error {
        Error::Transport {
            peer: self.label.clone(),
            reason: "connection closed".into(),
        }
    }

    /// Queues a text (control) frame if there is room; advisory, so dropped when
    /// the queue is full.
    pub(crate) fn try_send_text(&self, text: String) {
        let _ = self.tx.try_send(Message::Text(text));
    }
}
