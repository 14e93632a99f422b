//! Bad requests get A2A errors and the agent keeps serving; a running task is canceled;
//! tasks outlive a restart.

use std::sync::Arc;

use a2a::skill_fn;
use a2a::wire::AgentSkill;
use agent_sdk::SkillError;
use serde_json::{json, Value};

use crate::support::Served;

/// A JSON-RPC call of `method` with `params`, with `version` as `A2A-Version`.
async fn rpc(url: &str, version: Option<&str>, body: String) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(v) = version {
        r = r.header("A2A-Version", v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn call(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": "1", "method": method, "params": params}).to_string()
}

fn greet(name: &str) -> Value {
    json!({"message": {"messageId": "m-1", "role": "ROLE_USER",
                        "parts": [{"data": {"name": name}}]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a2a_errors_and_the_agent_keeps_serving() {
    let served = Served::start().await;
    let url = served.agent_url();
    let v1 = Some("1.0");
    let error = |(status, body): (u16, Value)| {
        assert_eq!(status, 200, "{body}");
        (
            body["error"]["code"].as_i64().unwrap(),
            body["error"]["message"].as_str().unwrap().to_owned(),
            body["error"]["data"][0]["reason"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };

    // No version header (0.3), and a version 2.
    let (code, message, reason) = error(rpc(&url, None, call("SendMessage", greet("Ada"))).await);
    assert_eq!((code, reason.as_str()), (-32009, "VERSION_NOT_SUPPORTED"));
    assert!(message.contains("\"0.3\" (no header)"), "{message}");
    let (code, ..) = error(rpc(&url, Some("2.0"), call("SendMessage", greet("Ada"))).await);
    assert_eq!(code, -32009);

    // Not JSON, not JSON-RPC, an unknown method.
    let (code, ..) = error(rpc(&url, v1, "{not json".into()).await);
    assert_eq!(code, -32700);
    let (code, ..) = error(rpc(&url, v1, "[1, 2]".into()).await);
    assert_eq!(code, -32600);
    let (code, message, _) = error(rpc(&url, v1, call("message/send", greet("Ada"))).await);
    assert_eq!(code, -32601);
    assert!(message.contains("SendMessage"), "{message}");

    // Malformed parts and params.
    let two_kinds = json!({"message": {"messageId": "m", "role": "ROLE_USER",
                                        "parts": [{"text": "a", "data": {"name": "x"}}]}});
    let (code, message, _) = error(rpc(&url, v1, call("SendMessage", two_kinds)).await);
    assert_eq!(code, -32602);
    assert!(message.contains("message.parts[0] holds 2"), "{message}");
    let (code, message, _) = error(
        rpc(
            &url,
            v1,
            call("SendMessage", json!({"message": {"parts": "x"}})),
        )
        .await,
    );
    assert_eq!(code, -32602);
    assert!(message.starts_with("params: "), "{message}");
    let no_skill = json!({"message": {"messageId": "m", "role": "ROLE_USER",
                                       "parts": [{"data": {"city": "Lisbon"}}]}});
    let (code, message, _) = error(rpc(&url, v1, call("SendMessage", no_skill)).await);
    assert_eq!(code, -32602);
    assert!(
        message.contains("no skill of this agent takes this request"),
        "{message}"
    );
    let as_agent = json!({"message": {"messageId": "m", "role": "ROLE_AGENT",
                                       "parts": [{"text": "hi"}]}});
    let (code, ..) = error(rpc(&url, v1, call("SendMessage", as_agent)).await);
    assert_eq!(code, -32602);

    // An unknown task, and a body above the limit.
    let (code, _, reason) =
        error(rpc(&url, v1, call("GetTask", json!({"id": "no-such-task"}))).await);
    assert_eq!((code, reason.as_str()), (-32001, "TASK_NOT_FOUND"));
    let huge = call("SendMessage", greet(&"x".repeat(2 * 1024 * 1024)));
    let (code, message, _) = error(rpc(&url, v1, huge).await);
    assert_eq!(code, -32600);
    assert!(message.contains("at most 1048576 bytes"), "{message}");

    // The HTTP+JSON binding answers with statuses and google.rpc.ErrorInfo.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{url}/tasks/no-such-task"))
        .header("A2A-Version", "1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["details"][0]["reason"], "TASK_NOT_FOUND");
    let r = http
        .get(format!("{url}/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let host = url.rsplit_once("/agents/").unwrap().0;
    // The host's card is its one agent's; its own Agora cards moved to /cards.
    let root: Value = http
        .get(format!("{host}/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["name"], "greeter");
    assert_eq!(root["supportedInterfaces"][0]["url"], format!("{url}/"));
    let r = http
        .get(format!("{host}/agents/0x1234/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // After all that, the agent still answers, and the skill's own refusal is a failed
    // task with its reason.
    let (status, body) = rpc(&url, v1, call("SendMessage", greet("Ada"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{body}"
    );
    let (_, body) = rpc(&url, v1, call("SendMessage", greet(" "))).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED", "{body}");
    assert_eq!(
        task["status"]["message"]["parts"][0]["text"],
        "bad_request: name is empty"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_task_is_canceled_and_tasks_outlive_a_restart() {
    // A skill that never finishes by itself.
    let wait = skill_fn(
        AgentSkill {
            id: "slow.wait".into(),
            name: "Wait".into(),
            ..AgentSkill::default()
        },
        |_: bool| async move {
            std::future::pending::<()>().await;
            Ok::<_, SkillError>(true)
        },
    );
    let served = Served::start_in(tempfile::tempdir().unwrap(), vec![wait]);
    let url = served.agent_url();
    let v1 = Some("1.0");

    let (_, done) = rpc(&url, v1, call("SendMessage", greet("Ada"))).await;
    let done = done["result"]["task"]["id"].as_str().unwrap().to_owned();
    let slow = json!({"message": {"messageId": "m-2", "role": "ROLE_USER", "parts": [{"data": true}],
                                   "metadata": {"skillId": "slow.wait"}},
                      "configuration": {"returnImmediately": true}});
    let (_, body) = rpc(&url, v1, call("SendMessage", slow)).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_SUBMITTED", "{body}");
    let slow = task["id"].as_str().unwrap().to_owned();

    let (_, body) = rpc(&url, v1, call("CancelTask", json!({"id": slow}))).await;
    assert_eq!(
        body["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{body}"
    );
    let (_, body) = rpc(&url, v1, call("GetTask", json!({"id": slow}))).await;
    assert_eq!(
        body["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{body}"
    );
    let (_, body) = rpc(&url, v1, call("CancelTask", json!({"id": slow}))).await;
    assert_eq!(body["error"]["code"], -32002, "{body}");

    // Restarted on the same store: both tasks are still there.
    let gateway = Arc::downgrade(&served.gateway);
    let dir = served.stop().await;
    assert!(
        gateway.upgrade().is_none(),
        "the stopped host let go of the gateway"
    );
    let served = Served::start_in(dir, Vec::new());
    let url = served.agent_url();
    let (_, body) = rpc(
        &url,
        v1,
        call("GetTask", json!({"id": done, "historyLength": 0})),
    )
    .await;
    assert_eq!(
        body["result"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{body}"
    );
    assert!(body["result"].get("history").is_none(), "{body}");
    let (_, body) = rpc(
        &url,
        v1,
        call("ListTasks", json!({"status": "TASK_STATE_CANCELED"})),
    )
    .await;
    assert_eq!(body["result"]["totalSize"], 1, "{body}");
    assert_eq!(body["result"]["tasks"][0]["id"], slow.as_str());
    served.stop().await;
}
