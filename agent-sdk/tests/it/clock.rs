//! Skills read wall-clock time through their context, from their host's clock: a
//! test moves a manual clock instead of sleeping past a deadline.

use std::time::{Duration, UNIX_EPOCH};

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Counter};
use agent_sdk::{HostConfig, ManualClock};

use crate::support::{host_with, CHAIN};

/// An offer that holds until `valid_until` (Unix seconds); answered with whether
/// it still holds.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Offer {
    valid_until: u64,
}

impl Request for Offer {
    const KIND: &'static str = "test.Offer";
    type Response = bool;
}

#[tokio::test]
async fn a_skill_sees_a_deadline_pass_when_the_hosts_clock_moves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let host = host_with(
        HostConfig::new(CHAIN, dir.path().join("s"))
            .workers(2)
            .clock(&clock),
    );
    let seller = AgentBuilder::new("seller")
        .skill(skill_fn(|ctx: Context, offer: Offer| async move {
            Ok(ctx.clock().unix_secs() < offer.valid_until)
        }))
        .skill(Counter)
        .spawn(&host)
        .unwrap();
    let buyer = AgentBuilder::new("buyer").spawn(&host).unwrap();
    let ctx = buyer.context();
    let offer = || Offer {
        valid_until: 1_700_000_030,
    };

    assert!(ctx.ask(seller.address(), offer()).await.unwrap());
    clock.advance(Duration::from_secs(29));
    assert!(ctx.ask(seller.address(), offer()).await.unwrap());
    clock.advance(Duration::from_secs(1));
    assert!(!ctx.ask(seller.address(), offer()).await.unwrap());

    // The time a dialogue's state was saved is the host's too.
    let d = ctx.new_dialogue();
    let t = Duration::from_secs(5);
    assert_eq!(
        ctx.ask_in(d, seller.address(), Add { n: 2 }, t)
            .await
            .unwrap(),
        2
    );
    let open = seller.context().open_dialogues().unwrap();
    let (dialogue, record) = open.first().unwrap();
    assert_eq!(*dialogue, d);
    assert_eq!(record.updated_ms, 1_700_000_030_000);
}
