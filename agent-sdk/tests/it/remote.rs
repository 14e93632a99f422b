//! Two hosts in one process, talking over loopback WebSocket.

use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Counter, Echo, Echoer};
use agent_sdk::{Error, HostConfig, Peer, StaticDirectory};

use crate::support::{host, host_with, CHAIN};

#[tokio::test]
async fn agents_on_two_hosts_ask_each_other_over_websocket() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (h1, h2) = (host(d1.path()), host(d2.path()));
    let b = AgentBuilder::new("b")
        .skill(Counter)
        .skill(Echoer)
        .spawn(&h2)
        .unwrap();
    let a = AgentBuilder::new("a")
        .skill(Echoer)
        .directory(StaticDirectory::default().with(
            "test.Add",
            Peer {
                address: b.address(),
                endpoint: h2.url(),
                price: None,
            },
        ))
        .spawn(&h1)
        .unwrap();
    let ctx = a.context();
    // The directory gives the endpoint; the host dials it.
    let found = ctx.find_peers("test.Add", None).await.unwrap();
    assert_eq!(found.len(), 1);
    let d = ctx.new_dialogue();
    let t = Duration::from_secs(10);
    for (n, want) in [(2, 2), (3, 5)] {
        assert_eq!(
            ctx.ask_in(d, b.address(), Add { n }, t).await.unwrap(),
            want
        );
    }
    // The other way round, over the same connection (h1 never listened for b).
    let back = b
        .context()
        .ask(
            a.address(),
            Echo {
                text: "back".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(back.text, "back");
    assert_eq!(h1.edge_stats().connections, 1, "h1 dialed once");
    assert_eq!(h2.edge_stats().connections, 1, "h2 accepted once");
    assert_eq!(b.stats().rejected, 0);
}

#[tokio::test]
async fn a_host_on_another_chain_refuses_and_the_asker_learns_why() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let h1 = host(d1.path());
    let h2 = host_with(HostConfig::new(CHAIN + 1, d2.path().join("s")).workers(1));
    let b = AgentBuilder::new("b").skill(Echoer).spawn(&h2).unwrap();
    let a = AgentBuilder::new("a").spawn(&h1).unwrap();
    h1.add_peer(b.address(), h2.url().unwrap());
    let err = a
        .context()
        .ask(b.address(), Echo { text: "x".into() })
        .await
        .unwrap_err();
    match err {
        Error::Refused { peer, reason } => {
            assert_eq!(peer, b.address());
            assert!(reason.contains("chain 1337"), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(h2.edge_stats().refused, 1);
}

#[tokio::test]
async fn the_host_serves_agent_cards_with_schemas_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let b = AgentBuilder::new("weather-b")
        .skill(Counter)
        .skill(Echoer)
        .spawn(&h)
        .unwrap();
    let addr = h.local_addr().unwrap();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/health").ends_with("ok\n"));
    let card = get(&format!("/card/{}", b.address()));
    let body = card.split("\r\n\r\n").nth(1).unwrap();
    let card: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(card["name"], "weather-b");
    assert_eq!(card["active"], true);
    assert_eq!(card["services"][0]["endpoint"], h.url().unwrap());
    let skills = card["skills"].as_array().unwrap();
    assert_eq!(skills[0]["kind"], "test.Add");
    assert_eq!(skills[0]["request"]["properties"]["n"]["type"], "integer");
    assert_eq!(skills[1]["kind"], "test.Echo");
    assert!(get("/metrics.json").contains("\"edge\""));
    assert!(get("/metrics").contains("\nagora_agents 1\n"));
    assert!(get("/nothing").starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn agents_talk_over_tls_and_an_untrusted_certificate_is_refused() {
    use agent_sdk::{ClientTls, ServerTls};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.serialize_pem().unwrap();
    let key_pem = cert.serialize_private_key_pem();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let server = host_with(
        HostConfig::new(CHAIN, dirs[0].path().join("s"))
            .workers(1)
            .tls(ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap()),
    );
    assert!(server.url().unwrap().starts_with("wss://"));
    let b = AgentBuilder::new("b").skill(Echoer).spawn(&server).unwrap();
    let url = format!("wss://localhost:{}", server.local_addr().unwrap().port());

    let trusting = host_with(
        HostConfig::new(CHAIN, dirs[1].path().join("t"))
            .workers(1)
            .client_tls(ClientTls::with_extra_roots_pem(cert_pem.as_bytes()).unwrap()),
    );
    trusting.add_peer(b.address(), url.clone());
    let a = AgentBuilder::new("a").spawn(&trusting).unwrap();
    let r = a
        .context()
        .ask(
            b.address(),
            Echo {
                text: "sealed".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.text, "sealed");

    // Only web PKI roots: the self-signed certificate fails the handshake.
    let wary = host(dirs[2].path());
    wary.add_peer(b.address(), url);
    let c = AgentBuilder::new("c").spawn(&wary).unwrap();
    let ctx = c.context();
    let err = ctx
        .ask_in(
            ctx.new_dialogue(),
            b.address(),
            Echo { text: "x".into() },
            Duration::from_millis(800),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(
        server.edge_stats().connections,
        1,
        "only the trusting host got in"
    );
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Fail {
    internal: bool,
}

impl Request for Fail {
    const KIND: &'static str = "test.Fail";
    type Response = ();
}

#[tokio::test]
async fn an_internal_failure_stays_on_its_host_and_the_remote_asker_learns_where_to_look() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (h1, h2) = (host(d1.path()), host(d2.path()));
    let b = AgentBuilder::new("b")
        .skill(skill_fn(|_ctx: Context, req: Fail| async move {
            Err(if req.internal {
                SkillError::internal("journal append: /srv/agents/b/journal: disk full")
            } else {
                SkillError::failed("no forecast for that city")
            })
        }))
        .spawn(&h2)
        .unwrap();
    let a = AgentBuilder::new("a").spawn(&h1).unwrap();
    h1.add_peer(b.address(), h2.url().unwrap());
    let ctx = a.context();

    // From another host: the code, and where the operator finds the details.
    let d = ctx.new_dialogue();
    let err = ctx
        .ask_in(
            d,
            b.address(),
            Fail { internal: true },
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    let Error::Skill(e) = &err else {
        panic!("expected a skill error, got {err}")
    };
    assert_eq!(e.code, "internal");
    assert!(!e.message.contains("/srv/agents"), "{err}");
    assert!(
        e.message.contains(&format!("(dialogue {d}, message ")),
        "{err}"
    );
    // An error meant for the asker reaches it whole.
    let err = ctx
        .ask(b.address(), Fail { internal: false })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Skill(e) if e.code == "failed" && e.message == "no forecast for that city"),
        "{err}"
    );
    // On its own host, an agent's internal failure is not hidden from its neighbour.
    let c = AgentBuilder::new("c").spawn(&h2).unwrap();
    let err = c
        .context()
        .ask(b.address(), Fail { internal: true })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/srv/agents/b/journal"), "{err}");
}
