//! One peer floods; another peer's asks still get through. The flooder's
//! connection is rate limited at the edge (back-pressure), not the whole host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_sdk::prelude::*;
use agent_sdk::testing::{Echo, Echoer};
use agent_sdk::{EdgeLimits, HostConfig};

use crate::support::{host, host_with, CHAIN};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Note(u32);

impl Request for Note {
    const KIND: &'static str = "test.Note";
    type Response = ();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_peer_is_throttled_without_hurting_another() {
    const RATE: u64 = 100;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let edge = EdgeLimits {
        rate: RATE,
        rate_period: Duration::from_secs(1),
        concurrency: 8,
        ..EdgeLimits::default()
    };
    let server = host_with(
        HostConfig::new(CHAIN, dirs[0].path().join("s"))
            .workers(2)
            .edge(edge),
    );
    let notes = Arc::new(AtomicU64::new(0));
    let n2 = notes.clone();
    let b = AgentBuilder::new("b")
        .skill(Echoer)
        .skill(skill_fn(move |_ctx: Context, _: Note| {
            let n = n2.clone();
            async move {
                n.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }))
        .spawn(&server)
        .unwrap();
    let (hx, hy) = (host(dirs[1].path()), host(dirs[2].path()));
    for h in [&hx, &hy] {
        h.add_peer(b.address(), server.url().unwrap());
    }
    let x = AgentBuilder::new("flooder").spawn(&hx).unwrap();
    let y = AgentBuilder::new("polite").spawn(&hy).unwrap();

    let started = Instant::now();
    let flooder = x.context();
    let to = b.address();
    let flood = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut sent = 0u32;
        // Each tell waits while the connection is throttled (back-pressure), so
        // bound the wait by the deadline.
        while sent < 20_000 {
            let tell = flooder.tell(to, Note(sent));
            match tokio::time::timeout_at(deadline.into(), tell).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => panic!("flood send failed: {e}"),
                Err(_) => break,
            }
        }
        sent
    });
    // Meanwhile the polite peer's asks are answered.
    let polite = y.context();
    for i in 0..10 {
        let r = polite
            .ask_in(
                polite.new_dialogue(),
                to,
                Echo {
                    text: format!("{i}"),
                },
                Duration::from_secs(3),
            )
            .await
            .unwrap();
        assert_eq!(r.text, format!("{i}"));
    }
    let sent = flood.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let handled = notes.load(Ordering::Relaxed);
    // The flooder got no more than its rate (plus one period of slack), although
    // it tried to send far more.
    let cap = (RATE as f64 * (elapsed + 1.0)) as u64;
    assert!(
        handled <= cap,
        "handled {handled} notes in {elapsed:.1} s, cap {cap}"
    );
    assert!(
        u64::from(sent) > handled,
        "the flood was not throttled: sent {sent}, handled {handled}"
    );
}
