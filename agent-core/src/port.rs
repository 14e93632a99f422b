//! The delivery port: how the transport hands what arrives on its connections to
//! the agents of its host, without knowing what an agent is.
//!
//! The transport checks each inbound envelope as far as it can alone (chain, expiry
//! against the host's clock, signature) and then calls the host's [`Port`], which
//! the agent side implements (the table of local agents in `agent.rs`). The
//! dependency goes one way: the agent module knows the port and the transport;
//! the transport knows only the port.

use std::sync::Arc;

use futures::future::BoxFuture;
use wallets::{Address, Signature, Wallet};

use crate::envelope::{Refusal, Rejection, Verified};
use crate::link::Link;

/// What the transport delivers to: the agents running on its host.
pub(crate) trait Port: Send + Sync + 'static {
    /// Whether `agent` runs on this host: the cheap check before a signature is
    /// verified for it.
    fn hosts(&self, agent: &Address) -> bool;

    /// The wallet of `agent` on this host, to sign the refusals of envelopes sent
    /// to it.
    fn wallet(&self, agent: &Address) -> Option<Arc<Wallet>>;

    /// Hands a remote envelope, already verified on its connection, to its
    /// recipient for the stateful checks (duplicates, replays) and its skill.
    /// `link` is the connection it arrived on: once the envelope is admitted, the
    /// route back to its sender.
    fn deliver(&self, verified: Verified, link: Arc<Link>) -> BoxFuture<'static, Delivery>;

    /// The connection of `link` was lost (it may be dialed again): the asks that
    /// left on it will get no answer.
    fn link_lost(&self, link: &Link);

    /// A remote host says it refused an ask of one of this host's agents.
    fn refused(&self, refused: RefusedAsk) -> BoxFuture<'static, RefusalOutcome>;
}

/// What became of an envelope handed to [`Port::deliver`].
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Admitted and dispatched.
    Admitted,
    /// Dropped by the checks (no such agent here, a duplicate, a replay...).
    Rejected(Rejection),
    /// The recipient stopped before it could take the envelope.
    Stopped,
}

/// A remote host says it refused an ask.
#[derive(Debug)]
pub(crate) struct RefusedAsk {
    /// What it says.
    pub(crate) refusal: Refusal,
    /// Its signature, to be the recipient's.
    pub(crate) signature: Signature,
    /// The link ([`Link::id`]) it came on.
    pub(crate) via: u64,
}

/// What became of a [`RefusedAsk`].
#[derive(Debug)]
pub(crate) enum RefusalOutcome {
    /// The ask failed with [`Error::Refused`](crate::Error::Refused).
    Failed,
    /// No such ask is pending (answered, timed out, never asked, or its agent no
    /// longer runs here).
    NoPendingAsk,
    /// The ask left on another link.
    OtherLink,
    /// Not signed by the agent asked.
    BadSignature(Rejection),
    /// The asking agent stopped while the refusal was handed to it.
    Stopped,
}
