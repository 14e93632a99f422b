//! Deals a buyer walked away from: an offer never accepted expires at its expiry, an
//! agreement never paid at its deadline. The seller closes them (journaled as
//! `expiry`) whenever a new call comes in, and on [`Seller::expire`].

use super::*;
use crate::journal::ExpiryBody;

impl Seller {
    /// Closes this seller's deals that ran out: offers past their expiry that were
    /// never accepted, agreements past their deadline that were never paid. Each is
    /// journaled as an `expiry`. The seller also does this lazily on every new call for
    /// proposals; call this from a timer to sweep without one. Returns how many it
    /// closed.
    ///
    /// # Errors
    /// [`crate::Error::Runtime`] when the agent's store cannot be read.
    pub async fn expire(&self, ctx: &Context) -> crate::Result<usize> {
        if self.inner.wallet.address() != ctx.me() {
            return Err(crate::Error::WrongWallet {
                wallet: self.inner.wallet.address(),
                agent: ctx.me(),
            });
        }
        let open = ctx.open_dialogues()?;
        let open = open
            .into_iter()
            .map(|(d, r)| (d, r.peer, r.state))
            .collect();
        Ok(self.inner.expire_in(ctx, open, None).await)
    }
}

impl SellerInner {
    /// [`Seller::expire`], skipping `except` (the dialogue being handled) and logging
    /// failures instead of failing the turn.
    pub(super) async fn expire_stale(&self, ctx: &Context, except: Option<B256>) {
        match ctx.open_dialogues() {
            Ok(open) => {
                let open = open
                    .into_iter()
                    .map(|(d, r)| (d, r.peer, r.state))
                    .collect();
                self.expire_in(ctx, open, except).await;
            }
            Err(e) => {
                tracing::warn!(target: "skill::negotiation", error = %e, "cannot list open deals");
            }
        }
    }

    async fn expire_in(
        &self,
        ctx: &Context,
        open: Vec<(B256, Address, Value)>,
        except: Option<B256>,
    ) -> usize {
        let now = ctx.clock().unix_secs();
        let mut closed = 0;
        for (dialogue, peer, state) in open {
            if Some(dialogue) == except {
                continue;
            }
            let Ok(deal) = serde_json::from_value::<SellerDeal>(state) else {
                continue; // another skill's dialogue
            };
            let (agreement, until, what) = match &deal {
                SellerDeal::Proposed { proposal, .. } => (
                    &proposal.agreement,
                    proposal.agreement.expiry,
                    "the offer was not accepted",
                ),
                SellerDeal::Accepted { agreement, .. } => (
                    &agreement.agreement,
                    agreement.agreement.deadline,
                    "the agreement was not paid",
                ),
                _ => continue,
            };
            if now <= until {
                continue;
            }
            // Skip a deal a handler is working on; the next sweep gets it.
            let lock = {
                let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
                locks.entry(dialogue).or_default().clone()
            };
            let Ok(_guard) = lock.try_lock_owned() else {
                continue;
            };
            let reason = format!("{what} by {until}");
            let hash = agreement.hash();
            let buyer = agreement.buyer;
            let closed_state = SellerDeal::Closed {
                buyer,
                agreement: Some(hash),
                outcome: format!("expired: {reason}"),
            };
            let entry = ExpiryBody {
                dialogue,
                agreement_hash: hash,
                buyer,
                reason: reason.clone(),
            };
            let done = match self.journal.append(entry).await {
                Ok(()) => ctx
                    .save_state(dialogue, peer, &closed_state, true)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match done {
                Ok(()) => {
                    closed += 1;
                    tracing::info!(target: "skill::negotiation", %dialogue, %buyer, %reason, "deal expired");
                }
                Err(e) => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, error = %e, "expiry not recorded");
                }
            }
        }
        closed
    }
}
