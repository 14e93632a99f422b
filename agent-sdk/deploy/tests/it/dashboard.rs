//! [`Dashboard`]: served on loopback over a deployment's chain and a journal that
//! grows while a page listens; its doors (the `Host` check on loopback, the token
//! elsewhere).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy::config::Config;
use deploy::dashboard::{Dashboard, DashboardOptions, TOKEN_ENV};
use serde_json::{json, Value};
use wallets::{Journal, Wallet};

const PASSWORD_ENV: &str = "AGORA_DASHBOARD_TEST_PASSWORD";
const TOKEN: &str = "0123456789abcdef-dashboard-test";

fn options(
    dir: &std::path::Path,
    config: Config,
    chain: &deploy::ChainSetup,
    listen: &str,
    token: Option<&str>,
) -> DashboardOptions {
    DashboardOptions {
        listen: listen.parse().unwrap(),
        token: token.map(|t| zeroize::Zeroizing::new(t.to_owned())),
        journals: vec![("weather".into(), dir.join("weather.journal"))],
        cache_dir: dir.join("dashboard"),
        config,
        rpc_url: chain.url.clone(),
        addresses: chain.addresses,
        refresh: Duration::from_millis(100),
    }
}

/// Reads Server-Sent Events from `response` until one named `name` whose data
/// satisfies `accept`, within 30 s.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    name: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let mut kind = "message";
            let mut data = String::new();
            for line in event.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if kind == name {
                let value: Value = serde_json::from_str(&data).unwrap();
                if accept(&value) {
                    return value;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name:?} event within 30 s"))
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_streams_a_growing_journal_and_reads_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (site, chain, weather) = crate::weather_site(dir.path(), PASSWORD_ENV).await;
    let config = Config::load(&site.config_path).unwrap();
    let dashboard = Dashboard::start(options(dir.path(), config, &chain, "127.0.0.1:0", None))
        .await
        .unwrap();
    dashboard.agent_status("weather", weather, "ready");
    let http = reqwest::Client::new();
    let mut events = http
        .get(format!("{}events", dashboard.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let snapshot = next_event(&mut events, &mut buffer, "snapshot", |_| true).await;
    assert_eq!(snapshot["chain"]["chainId"], chain.addresses.chain_id);
    assert_eq!(
        snapshot["agents"]["weather"]["services"][0],
        json!({"skill": "weather.forecast", "price": "0.95 USDC", "unit": "forecast"})
    );
    // The agent's balances come from the chain: gas from the dev faucet, no USDC.
    let agent = next_event(&mut events, &mut buffer, "agent", |a| {
        a["gas"].is_string() && a["balance"].is_string()
    })
    .await;
    assert_eq!(agent["balance"], "0.00 USDC");
    assert_eq!(agent["address"], weather.to_string());

    // The journal grows while the page listens: a call for proposals, then its end.
    let mut journal = Journal::open(
        dir.path().join("weather.journal"),
        Arc::new(Wallet::random()),
    )
    .unwrap();
    let dialogue = format!("0x{}", "ab".repeat(32));
    journal
        .append("cfp", json!({"dialogue": dialogue, "call": {"kind": "weather.forecast", "maxPrice": "2000000"}}))
        .unwrap();
    let deal = next_event(&mut events, &mut buffer, "deal", |d| d["stage"] == "cfp").await;
    assert_eq!(deal["id"], dialogue);
    assert_eq!(deal["skill"], "weather.forecast");
    journal
        .append(
            "rejection",
            json!({"dialogue": dialogue, "reason": "too dear"}),
        )
        .unwrap();
    let deal = next_event(&mut events, &mut buffer, "deal", |d| {
        d["stage"] == "rejection"
    })
    .await;
    assert_eq!(deal["steps"].as_array().unwrap().len(), 2);
    // The audit of the journal reports it: one verified journal.
    let audited = next_event(&mut events, &mut buffer, "journals", |j| {
        j["journals"][0]["entries"] == 2
    })
    .await;
    assert_eq!(audited["journals"][0]["verified"], true);
    assert_eq!(audited["journals"][0]["agent"], "weather");

    // The same state as JSON.
    let state: Value = http
        .get(format!("{}api/state", dashboard.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["deals"][&dialogue]["stage"], "rejection");
    assert!(state["chain"]["block"].as_u64().unwrap() > 0);

    // A request through another host name (DNS rebinding) is refused.
    let rebound = http
        .get(format!("{}api/state", dashboard.url()))
        .header(
            "host",
            format!("attacker.example:{}", dashboard.local_addr().port()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    assert!(rebound.text().await.unwrap().contains("attacker.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_dashboard_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (site, chain, _) = crate::weather_site(dir.path(), PASSWORD_ENV).await;
    let config = Config::load(&site.config_path).unwrap();
    let open = |listen: &str, token: Option<&str>| {
        Dashboard::start(options(dir.path(), config.clone(), &chain, listen, token))
    };
    let err = open("0.0.0.0:0", None).await.unwrap_err().to_string();
    assert!(err.contains(TOKEN_ENV) && err.contains("0.0.0.0"), "{err}");
    let err = open("0.0.0.0:0", Some("short"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");

    let dashboard = open("0.0.0.0:0", Some(TOKEN)).await.unwrap();
    // Reached over loopback, as every test's traffic is.
    let base = format!("http://127.0.0.1:{}", dashboard.local_addr().port());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{base}{path}"));
    let refused = get("/api/state").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains(TOKEN_ENV));
    let wrong = get("/api/state")
        .bearer_auth("0123456789abcdef-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = get("/api/state").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    // The page's way in: the token once in the URL, then a cookie, and the URL
    // without it.
    let entry = get(&format!("/?token={TOKEN}")).send().await.unwrap();
    assert_eq!(entry.status(), 303);
    assert_eq!(entry.headers()["location"], "/");
    let cookie = entry.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = get("/").header("cookie", &pair).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("<script src=\"/app.js\""));
    let bad = get("/?token=0123456789abcdef-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}
