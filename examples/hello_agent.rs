//! A whole agent with one skill, and another agent asking it, in about twenty lines
//! of agent code.
//!
//! Run: `cargo run -p agent-sdk --example hello_agent`
//!
//! Prints the greeter's answer (`hello Ada, from greeter`) and the greeter's agent
//! card with the JSON Schemas of its skill's request and response.

use agent_sdk::prelude::*;

/// The request: a name. Its answer: a greeting.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Greet {
    name: String,
}

impl Request for Greet {
    const KIND: &'static str = "hello.Greet";
    type Response = String;
}

/// The skill.
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::spawn(HostConfig::new(1337, dir.path()))?;
    let greeter = AgentBuilder::new("greeter").skill(Hello).spawn(&host)?;
    let caller = AgentBuilder::new("caller").spawn(&host)?;

    let greeting = caller
        .context()
        .ask(greeter.address(), Greet { name: "Ada".into() })
        .await?;
    println!("{greeting}");
    let card = host.cards().into_iter().find(|c| c["name"] == "greeter");
    println!("{}", serde_json::to_string_pretty(&card)?);
    Ok(())
}
