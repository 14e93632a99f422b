//! Messages and skills shared by the SDK's tests, examples and test peer process.
//! Small, but real: the counter keeps its total in persisted dialogue state, so it
//! shows restarts resuming dialogues. Also [`free_port`], for tests that must write
//! an address down before the process that listens on it starts.

use crate::prelude::*;

/// Adds `n` to the running total of the asker's dialogue.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Add {
    /// How much to add.
    pub n: u64,
}

impl Request for Add {
    const KIND: &'static str = "test.Add";
    type Response = u64;
}

/// Echoes its text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Echo {
    /// The text.
    pub text: String,
}

impl Request for Echo {
    const KIND: &'static str = "test.Echo";
    type Response = Echo;
}

/// Keeps a running total per dialogue, persisted before it answers.
#[derive(Debug, Default)]
pub struct Counter;

#[async_trait]
impl Skill for Counter {
    type Request = Add;

    async fn handle(&self, ctx: &Context, req: Add) -> Result<u64, SkillError> {
        let (Some(dialogue), Some(peer)) = (ctx.dialogue(), ctx.sender()) else {
            return Err(SkillError::bad_request("Add needs a dialogue"));
        };
        let total: u64 = ctx
            .state(dialogue)
            .map_err(|e| SkillError::internal(e.to_string()))?
            .unwrap_or(0);
        let total = total
            .checked_add(req.n)
            .ok_or_else(|| SkillError::bad_request("total overflows"))?;
        ctx.save_state(dialogue, peer, &total, false)
            .await
            .map_err(|e| SkillError::internal(e.to_string()))?;
        Ok(total)
    }
}

/// Answers with what it was sent.
#[derive(Debug, Default)]
pub struct Echoer;

#[async_trait]
impl Skill for Echoer {
    type Request = Echo;

    async fn handle(&self, _: &Context, req: Echo) -> Result<Echo, SkillError> {
        Ok(req)
    }
}

/// Prefer listening on port 0 and reading back the address the listener got
/// ([`Host::local_addr`], or the `READY` line of the `agora-test-peer` binary):
/// a port probed here is free when probed, and someone else may bind it before the
/// process that is meant to does.
///
/// A loopback TCP port that is free now and stays out of the way of outgoing
/// connections: it is chosen below the kernel's ephemeral port range (Linux's
/// `ip_local_port_range`), where no connect ever takes a local port. A port from
/// `bind(0)` is in that range, so while a test restarts the process that listened on
/// it, any connection of a test running beside it may take it (`Address already in
/// use`).
///
/// # Errors
/// When no port in the range can be bound.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let (start, span) = (10_000u32, low.saturating_sub(10_000).max(1));
    // Spread the processes and the calls of one process over the range.
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..span.min(2_000) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = start + seed.wrapping_add(n.wrapping_mul(104_729)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port between {start} and {low}"),
    ))
}
