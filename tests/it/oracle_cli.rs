//! `agora oracle` against `agora chain` with the real model: a request made with
//! foundry's `cast` (as any wallet would), served by `agora oracle serve` as a
//! registered agent of the model, re-run by `agora oracle check`, shown by `show`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llm::oracle::OracleSampling;
use llm::SamplingParams;
use registry::devnet::{dev_key, dev_wallet};

use crate::chain_cli::{agora_on, cast, import_dev_key, start_chain, stop};

#[tokio::test(flavor = "multi_thread")]
async fn serve_check_and_show_a_request() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let model = llm::test_utils::model_path();
    let fingerprint = llm::fingerprint(&model).unwrap().to_b256().to_string();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (chain, url, _) = start_chain(&home, &[]);
    let agora = |args: &[&str]| agora_on(&home, &url, args);
    let addresses: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("chain/addresses.json")).unwrap())
            .unwrap();
    let token = addresses["stablecoin"].as_str().unwrap().to_owned();
    let oracle = addresses["inferenceOracle"].as_str().unwrap().to_owned();

    // The model's provenance (from the deployer's account) and an agent of it.
    let publisher = home.join("publisher.json");
    import_dev_key(0, &publisher);
    let (ok, _, err) = agora(&[
        "model",
        "register",
        model.to_str().unwrap(),
        "--keystore",
        publisher.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let agent = home.join("agent.json");
    let agent_address = import_dev_key(2, &agent);
    let (ok, _, err) = agora(&[
        "registry",
        "register",
        "--keystore",
        agent.to_str().unwrap(),
        "--endpoint",
        "ws://127.0.0.1:7600",
        "--model-fingerprint",
        &fingerprint,
        "--service",
        "llm.complete=0.01/request",
    ]);
    assert!(ok, "{err}");

    // A requester with 1 USDC asks, with cast.
    let key = |i: u32| format!("0x{}", hex::encode(dev_key(i)));
    let requester = dev_wallet(6).address().to_string();
    let send = |i: u32, to: &str, sig: &str, args: &[&str]| {
        let k = key(i);
        let mut all = vec![
            "send",
            "--json",
            "--rpc-url",
            &url,
            "--private-key",
            &k,
            to,
            sig,
        ];
        all.extend_from_slice(args);
        let out = cast(&all);
        let receipt: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(receipt["status"], "0x1", "{sig}: {out}");
    };
    send(0, &token, "mint(address,uint256)", &[&requester, "1000000"]);
    send(6, &token, "approve(address,uint256)", &[&oracle, "250000"]);
    let prompt =
        "<|im_start|>user\nName one colour of the rainbow.<|im_end|>\n<|im_start|>assistant\n";
    let sampling = OracleSampling::new(
        SamplingParams::greedy().with_seed(1).with_max_tokens(8),
        None,
    );
    let now: u64 = cast(&["block", "latest", "-f", "timestamp", "--rpc-url", &url])
        .parse()
        .unwrap();
    send(
        6,
        &oracle,
        "request(bytes32,bytes,bytes32,bytes,uint256,uint64)",
        &[
            &fingerprint,
            &format!("0x{}", hex::encode(prompt)),
            &sampling.hash().to_string(),
            &format!("0x{}", hex::encode(sampling.to_bytes())),
            "250000",
            &(now + 600).to_string(),
        ],
    );

    // The agent serves it.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "oracle",
            "serve",
            "--rpc",
            &url,
            "--every",
            "1",
            "--keystore",
        ])
        .arg(&agent)
        .arg("--model")
        .arg(&model)
        .env("AGORA_HOME", &home)
        .env("AGORA_PASSWORD", "pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = serve.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A bound, not a wait: the serving is seconds of inference.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut printed = String::new();
    let fulfilled = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
                if line.starts_with("request 1: fulfilled") {
                    break line;
                }
            }
            Err(e) => {
                let _ = serve.kill();
                panic!("no fulfilment ({e}); agora oracle serve printed:\n{printed}")
            }
        }
    };
    assert!(
        printed.contains(&format!("as {agent_address}")),
        "{printed}"
    );
    // Ctrl-C right away: it may come while the next poll is under way, and it must not
    // be lost then.
    let status = crate::stop_child(&mut serve, "-INT", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("serve did not stop within a minute of Ctrl-C:\n{printed}"));
    assert!(status.success(), "serve stops cleanly on Ctrl-C: {status}");

    let output = fulfilled
        .split_once(" with ")
        .map(|(_, o)| o.to_owned())
        .unwrap();
    // The answer is final once the chain's clock reaches the fulfilment's time plus the
    // challenge window. `show` is bracketed by two mined blocks, whose timestamps bound
    // the time its call saw: the test knows which answer is right without depending on
    // how fast this machine is.
    let window: u64 = cast(&[
        "call",
        &oracle,
        "challengeWindow()(uint64)",
        "--rpc-url",
        &url,
    ])
    .parse()
    .unwrap();
    let chain_now = || -> u64 {
        cast(&["rpc", "evm_mine", "--rpc-url", &url]);
        cast(&["block", "latest", "-f", "timestamp", "--rpc-url", &url])
            .parse()
            .unwrap()
    };
    let show = || -> bool {
        loop {
            let before = chain_now();
            let (ok, out, err) = agora(&["oracle", "show", "1"]);
            let after = chain_now();
            assert!(ok, "{err}");
            assert!(out.contains("\"status\": \"fulfilled\""), "{out}");
            assert!(out.contains(&output), "{out} lacks {output}");
            let json = &out[..out.find("\nanswer: ").unwrap()];
            let request: serde_json::Value = serde_json::from_str(json).unwrap();
            let closes = request["fulfilledAt"].as_u64().unwrap() + window;
            if after < closes {
                assert!(out.contains("answer: not final"), "{out}");
                return false;
            }
            if before >= closes {
                assert!(out.contains("answer: final"), "{out}");
                return true;
            }
            // The window closed during the call: either answer was right; again.
        }
    };
    // Right after the fulfilment the answer is still open to challenge (unless this
    // machine took the whole window to get here; the check above is exact either way).
    show();
    // Anyone re-running it gets the same output.
    let (ok, out, err) = agora(&["oracle", "check", "1", "--model", model.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("the re-run gives the fulfilled output"),
        "{out}"
    );
    // Past the window, it is final.
    cast(&[
        "rpc",
        "evm_increaseTime",
        &format!("{window:#x}"),
        "--rpc-url",
        &url,
    ]);
    assert!(show(), "not final past the challenge window");
    stop(chain);
}
