//! Fixtures: a host with an agent (a typed actor skill, and a text skill) served over
//! A2A on the host's edge, and the real Python client's venv.

use std::sync::Arc;

use a2a::wire::AgentSkill;
use a2a::{skill_fn, A2aAgent, A2aGateway, GatewayConfig};
use agent_sdk::prelude::*;

/// `hello.Greet`: the actor skill served over A2A.
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct Greet {
    name: String,
}

impl Request for Greet {
    const KIND: &'static str = "hello.Greet";
    type Response = String;
}

struct Hello;

#[async_trait]
impl Skill for Hello {
    type Request = Greet;

    async fn handle(&self, ctx: &Context, req: Greet) -> Result<String, SkillError> {
        if req.name.trim().is_empty() {
            return Err(SkillError::bad_request("name is empty"));
        }
        Ok(format!("hello {}, from {}", req.name, ctx.name()))
    }
}

/// A host serving the agent `greeter` over A2A at `/agents`.
pub(crate) struct Served {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) host: Option<Host>,
    pub(crate) agent: AgentHandle,
    pub(crate) gateway: Arc<A2aGateway>,
}

impl Served {
    pub(crate) async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), Vec::new())
    }

    /// In `dir`, with `extra` A2A skills beside `hello.Greet` and `text.echo`.
    pub(crate) fn start_in(dir: tempfile::TempDir, extra: Vec<Arc<dyn a2a::A2aSkill>>) -> Self {
        let host = Host::spawn(
            HostConfig::new(1337, dir.path().join("host")).listen("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
        // The same key each time, so a restart serves the same agent.
        let wallet = Wallet::from_bytes(&[7; 32]).unwrap();
        let agent = AgentBuilder::new("greeter")
            .wallet(wallet)
            .skill(Hello)
            .spawn(&host)
            .unwrap();
        let base = format!("http://{}", host.local_addr().unwrap());
        let gateway =
            Arc::new(A2aGateway::open(GatewayConfig::new(dir.path().join("a2a"), base)).unwrap());
        let echo = skill_fn(
            AgentSkill {
                id: "text.echo".into(),
                name: "Echo".into(),
                description: "Answers a text message with its text".into(),
                ..AgentSkill::default()
            },
            |text: String| async move { Ok::<_, SkillError>(text) },
        );
        let mut served = A2aAgent::from_handle(&agent).skill(echo);
        for skill in extra {
            served = served.skill(skill);
        }
        gateway.add(served).unwrap();
        let router = a2a::http::router(gateway.clone());
        host.mount_http("/agents", router.clone()).unwrap();
        host.mount_http("/.well-known/agent-card.json", router)
            .unwrap();
        Self {
            dir,
            host: Some(host),
            agent,
            gateway,
        }
    }

    /// The agent's A2A base URL.
    pub(crate) fn agent_url(&self) -> String {
        self.gateway.agent_url(self.agent.address())
    }

    /// Stops the host; hands back the directory (to start again in it).
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(host) = self.host.take() {
            tokio::task::spawn_blocking(move || host.shutdown())
                .await
                .unwrap();
        }
        self.dir
    }
}
