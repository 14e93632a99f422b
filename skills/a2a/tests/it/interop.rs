//! The real A2A clients, Python (PyPI `a2a-sdk` 1.3.0) and TypeScript (npm
//! `@a2a-js/sdk` 1.3.0), against an agent served by the gateway on a host's HTTP edge: the card resolves, a data part reaches the agent's
//! typed skill and comes back as a data part in a completed task (JSON-RPC, streaming,
//! HTTP+JSON), a text message reaches its text skill, tasks are got and listed, and a
//! finished or unknown task is refused with the SDK's own error classes.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;

use a2a::test_utils::{python, script};

use crate::support::Served;

#[tokio::test(flavor = "multi_thread")]
async fn the_python_a2a_client_talks_to_an_agora_agent() {
    let python = python();
    let served = Served::start().await;
    let url = served.agent_url();

    let mut child = tokio::process::Command::new(&python)
        .arg(script("client.py"))
        .args(["--url", &url])
        .args(["--request", &json!({"name": "Ada"}).to_string()])
        .args(["--text", "ping"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(180), async {
        let (a, b) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        a.unwrap();
        b.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .unwrap_or_else(|_| panic!("client.py hung"));
    assert!(finished.success(), "client.py failed: {out}\n{err}");
    let out: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("client.py printed {out:?} ({e}): {err}"));

    // The card, as the SDK parsed it.
    let card = &out["card"];
    assert_eq!(card["name"], "greeter");
    assert_eq!(card["supportedInterfaces"][0]["url"], format!("{url}/"));
    assert_eq!(card["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
    assert_eq!(
        card["supportedInterfaces"][1]["protocolBinding"],
        "HTTP+JSON"
    );
    assert_eq!(card["capabilities"]["streaming"], true);
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["hello.Greet", "text.echo"]);

    // A data part, through JSON-RPC: one completed task with the answer as data.
    let greeting = json!("hello Ada, from greeter");
    let [sent] = out["send"].as_array().unwrap().as_slice() else {
        panic!("{}", out["send"]);
    };
    let task = &sent["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["data"], greeting);
    assert_eq!(
        task["history"][0]["parts"][0]["data"],
        json!({"name": "Ada"})
    );

    // Streaming: the task, working, the artifact, completed.
    let kinds: Vec<String> = out["stream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind = e.as_object().unwrap().keys().next().unwrap().clone();
            match kind.as_str() {
                "statusUpdate" => {
                    format!("status {}", e[&kind]["status"]["state"].as_str().unwrap())
                }
                _ => kind,
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "task",
            "status TASK_STATE_WORKING",
            "artifactUpdate",
            "status TASK_STATE_COMPLETED"
        ]
    );
    assert_eq!(
        out["stream"][2]["artifactUpdate"]["artifact"]["parts"][0]["data"],
        greeting
    );

    // HTTP+JSON, and a text part to the text skill.
    assert_eq!(
        out["rest"][0]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    assert_eq!(
        out["rest"][0]["task"]["artifacts"][0]["parts"][0]["data"],
        greeting
    );
    assert_eq!(
        out["text"][0]["task"]["artifacts"][0]["parts"][0]["data"],
        "ping"
    );

    // GetTask, ListTasks (most recent first, two a page, four in all).
    assert_eq!(out["get"]["id"], task["id"]);
    assert_eq!(out["get"]["status"]["state"], "TASK_STATE_COMPLETED");
    let list = &out["list"];
    assert_eq!(list["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(list["totalSize"], 4);
    assert!(!list["nextPageToken"].as_str().unwrap().is_empty());
    assert_eq!(list["tasks"][0]["id"], out["text"][0]["task"]["id"]);

    // The SDK's own error classes.
    assert_eq!(
        out["errors"]["cancel"][0], "TaskNotCancelableError",
        "{}",
        out["errors"]
    );
    assert_eq!(
        out["errors"]["unknown"][0], "TaskNotFoundError",
        "{}",
        out["errors"]
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_a2a_client_talks_to_an_agora_agent() {
    let dir = a2a::test_utils::node_client();
    let served = Served::start().await;
    let out = x402::test_utils::run(
        std::path::Path::new("node"),
        &dir.join("client.mjs"),
        &[
            "--url".into(),
            served.agent_url(),
            "--request".into(),
            json!({"name": "Grace"}).to_string(),
        ],
        &[],
    )
    .await;
    let greeting = json!("hello Grace, from greeter");
    let task = &out["send"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{out}");
    assert_eq!(task["artifacts"][0]["parts"][0]["data"], greeting, "{out}");
    let stream = out["stream"].as_array().unwrap();
    assert_eq!(stream.len(), 4, "{out}");
    assert_eq!(
        stream[0]["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{out}"
    );
    assert_eq!(
        stream[2]["artifactUpdate"]["artifact"]["parts"][0]["data"],
        greeting
    );
    assert_eq!(
        stream[3]["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    assert_eq!(out["get"]["id"], task["id"]);
    served.stop().await;
}
