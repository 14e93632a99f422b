//! Agents on one host: typed values through mailboxes, with the same checks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Counter, Echo, Echoer};
use agent_sdk::{AgentLimits, Error};

use crate::support::{host, WAIT};

#[tokio::test]
async fn ask_tell_and_dialogue_state_on_one_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let b = AgentBuilder::new("b")
        .skill(Counter)
        .skill(Echoer)
        .spawn(&host)
        .unwrap();
    let a = AgentBuilder::new("a").spawn(&host).unwrap();
    let ctx = a.context();
    let echo = ctx
        .ask(b.address(), Echo { text: "hi".into() })
        .await
        .unwrap();
    assert_eq!(echo.text, "hi");

    // A dialogue keeps its running total; another dialogue starts afresh.
    let d = ctx.new_dialogue();
    let t = Duration::from_secs(5);
    for (n, want) in [(1, 1), (2, 3), (10, 13)] {
        assert_eq!(
            ctx.ask_in(d, b.address(), Add { n }, t).await.unwrap(),
            want
        );
    }
    assert_eq!(ctx.ask(b.address(), Add { n: 5 }).await.unwrap(), 5);

    // Unknown skill: a clear error from the peer, not a timeout.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Nope;
    impl Request for Nope {
        const KIND: &'static str = "test.Nope";
        type Response = ();
    }
    let err = ctx.ask(b.address(), Nope).await.unwrap_err();
    assert!(
        matches!(&err, Error::Skill(e) if e.code == "unknown_skill"),
        "{err}"
    );
    // No route to an address nobody knows.
    let stranger = Wallet::random().address();
    assert!(matches!(
        ctx.tell(stranger, Echo { text: "x".into() }).await,
        Err(Error::NoRoute(a)) if a == stranger
    ));
    assert_eq!(b.stats().rejected, 0);
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Boom {
    panic: bool,
}

impl Request for Boom {
    const KIND: &'static str = "test.Boom";
    type Response = String;
}

#[tokio::test]
async fn a_panicking_skill_restarts_its_agent_which_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let b = AgentBuilder::new("b")
        .skill(skill_fn(|_ctx: Context, req: Boom| async move {
            assert!(!req.panic, "asked to panic");
            Ok("fine".to_string())
        }))
        .skill(Counter)
        .spawn(&host)
        .unwrap();
    let a = AgentBuilder::new("a").spawn(&host).unwrap();
    let ctx = a.context();
    let d = ctx.new_dialogue();
    let t = Duration::from_secs(5);
    assert_eq!(
        ctx.ask_in(d, b.address(), Add { n: 4 }, t).await.unwrap(),
        4
    );

    let err = ctx
        .ask(b.address(), Boom { panic: true })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Skill(e) if e.code == "internal"),
        "{err}"
    );
    // The supervisor restarts the agent; its dialogue state survives in the store.
    assert_eq!(
        ctx.ask(b.address(), Boom { panic: false }).await.unwrap(),
        "fine"
    );
    assert_eq!(
        ctx.ask_in(d, b.address(), Add { n: 1 }, t).await.unwrap(),
        5
    );
    let stats = b.stats();
    assert_eq!((stats.panics, stats.restarts), (1, 1));
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Slow(u64);

impl Request for Slow {
    const KIND: &'static str = "test.Slow";
    type Response = ();
}

/// A gate that blocks the threads that wait at it until it opens (at most
/// [`WAIT`], so that a failing test cannot hang).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let (open, _) = self.opened.wait_timeout_while(open, WAIT, |o| !*o).unwrap();
        assert!(*open, "the gate stayed shut");
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_makes_senders_wait_and_loses_nothing() {
    const MAILBOX: usize = 4;
    const TELLS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    // The skill holds its agent's thread at the gate: while it is shut, nothing
    // leaves the mailbox.
    let gate = Arc::new(Gate::default());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let g = gate.clone();
    let limits = AgentLimits {
        mailbox: MAILBOX,
        ..AgentLimits::default()
    };
    let b = AgentBuilder::new("b")
        .limits(limits)
        .skill(skill_fn(move |_ctx: Context, Slow(n): Slow| {
            let (g, seen_tx) = (g.clone(), seen_tx.clone());
            async move {
                g.wait();
                let _ = seen_tx.send(n);
                Ok(())
            }
        }))
        .spawn(&host)
        .unwrap();
    let a = AgentBuilder::new("a").spawn(&host).unwrap();
    let ctx = a.context();
    let to = b.address();
    let sent = Arc::new(AtomicUsize::new(0));
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let s = sent.clone();
    let sender = tokio::spawn(async move {
        for n in 1..=TELLS {
            ctx.tell(to, Slow(n)).await.unwrap();
            progress_tx.send_replace(s.fetch_add(1, Ordering::SeqCst) + 1);
        }
    });
    // One tell is in the blocked skill and the mailbox holds four more: the sender
    // gets that far, and no further while the gate is shut.
    tokio::time::timeout(WAIT, progress.wait_for(|&n| n > MAILBOX))
        .await
        .expect("the mailbox filled within 10 s")
        .unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), MAILBOX + 1);
    gate.open();
    tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    let mut handled = Vec::new();
    for _ in 1..=TELLS {
        let n = tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap()
            .unwrap();
        handled.push(n);
    }
    assert_eq!(handled, (1..=TELLS).collect::<Vec<_>>());
    assert_eq!(b.stats().handled, TELLS);
}

#[tokio::test]
async fn an_ask_times_out_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let b = AgentBuilder::new("b")
        .skill(skill_fn(|_ctx: Context, _: Slow| async move {
            // Never answers.
            std::future::pending::<()>().await;
            Ok(())
        }))
        .spawn(&host)
        .unwrap();
    let a = AgentBuilder::new("a").spawn(&host).unwrap();
    let ctx = a.context();
    let err = ctx
        .ask_in(
            ctx.new_dialogue(),
            b.address(),
            Slow(1),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { millis: 100, .. }), "{err}");
}

#[tokio::test]
async fn a_dialogue_belongs_to_its_peer() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let b = AgentBuilder::new("b").skill(Counter).spawn(&host).unwrap();
    let a = AgentBuilder::new("a").spawn(&host).unwrap();
    let mallory = AgentBuilder::new("mallory").spawn(&host).unwrap();
    let t = Duration::from_secs(5);
    let d = a.context().new_dialogue();
    assert_eq!(
        a.context()
            .ask_in(d, b.address(), Add { n: 7 }, t)
            .await
            .unwrap(),
        7
    );
    // Another agent reusing a's dialogue id neither sees nor changes its total.
    let err = mallory
        .context()
        .ask_in(d, b.address(), Add { n: 1000 }, t)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to"), "{err}");
    assert_eq!(
        a.context()
            .ask_in(d, b.address(), Add { n: 1 }, t)
            .await
            .unwrap(),
        8
    );
}
