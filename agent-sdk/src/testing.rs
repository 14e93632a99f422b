//! Messages and skills shared by the SDK's tests, examples and test peer process.
//! Small, but real: the counter keeps its total in persisted dialogue state, so it
//! shows restarts resuming dialogues.
//!
//! There is no free-port helper: a test process listens on port 0 and reports the
//! address it got ([`Host::local_addr`](crate::Host::local_addr), or the `READY`
//! line of a test peer binary). A port probed free is free only when probed; another
//! process may bind it before the one that was meant to.

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
