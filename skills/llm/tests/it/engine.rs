//! The engine on the real model: structured output, determinism, batching,
//! attestations, streaming and the errors.

use std::collections::HashSet;
use std::num::NonZeroU32;

use llm::llama_cpp_2::context::params::LlamaContextParams;
use llm::llama_cpp_2::llama_batch::LlamaBatch;
use llm::llama_cpp_2::model::params::LlamaModelParams;
use llm::llama_cpp_2::model::LlamaModel;
use llm::llama_cpp_2::sampling::LlamaSampler;
use llm::llama_cpp_2::token::LlamaToken;
use llm::Error;
use llm::{
    attestation_domain, backend, fingerprint, ChatMessage, FetchEvent, FinishReason,
    GenerationRequest, Isolation, JsonGrammar, LlmConfig, LlmEngine, ModelInfo, ModelSpec,
    ModelStore, Prompt, SamplingParams, SMOLLM2_135M_SHA256,
};
use schemars::JsonSchema;
use serde::Deserialize;
use wallets::Wallet;

use llm::test_utils::{self as support, shared_engine as engine};

// ---------------------------------------------------------------- model management

#[test]
fn default_model_is_cached_verified_and_described() {
    let path = support::model_path();
    if std::env::var_os(llm::MODEL_PATH_ENV).is_none() {
        let mut events = Vec::new();
        let again = ModelStore::new(support::model_cache())
            .ensure(&ModelSpec::smollm2_135m(), &mut |e| events.push(e))
            .unwrap();
        assert_eq!(again, path);
        assert!(
            matches!(events.as_slice(), [FetchEvent::AlreadyPresent { .. }]),
            "{events:?}"
        );
        assert_eq!(fingerprint(&path).unwrap().to_string(), SMOLLM2_135M_SHA256);
    }
    let info = ModelInfo::read(&path).unwrap();
    assert_eq!(info.fingerprint, fingerprint(&path).unwrap());
    assert_eq!(info.architecture, "llama");
    assert!(
        info.parameters > 100_000_000 && info.parameters < 200_000_000,
        "{}",
        info.parameters
    );
    assert_eq!(info.context_length, 8192);
    assert!(info
        .chat_template
        .as_deref()
        .unwrap_or("")
        .contains("im_start"));
    assert_eq!(engine().info(), &info);
    // One engine per model and process: asking again gives the running one.
    let again = LlmEngine::shared(support::engine_config().with_threads(1)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&again, &engine()));
    assert_eq!(again.config().threads(), 2);
}

#[test]
fn missing_and_corrupt_model_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.gguf");
    let err = LlmEngine::load(LlmConfig::new(&missing)).unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.gguf"), "{err}");

    let foreign = tmp.path().join("foreign.gguf");
    std::fs::write(&foreign, b"<html>not a model</html>").unwrap();
    let err = LlmEngine::load(LlmConfig::new(&foreign)).unwrap_err();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");

    // The real model cut short: right magic, missing tensors.
    let truncated = tmp.path().join("truncated.gguf");
    let bytes = std::fs::read(support::model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = ModelInfo::read(&truncated).unwrap_err();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated.gguf"), "{err}");
}

// ---------------------------------------------------------------- structured output

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
enum Condition {
    Sunny,
    Cloudy,
    Rainy,
    Snowy,
    Windy,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
struct Forecast {
    #[schemars(length(max = 24))]
    city: String,
    celsius: i8,
    condition: Condition,
    #[schemars(range(max = 100))]
    rain_percent: u8,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
#[serde(rename_all = "UPPERCASE")]
enum Currency {
    Usdc,
    Eur,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
struct Quote {
    #[schemars(length(max = 32))]
    service: String,
    price_cents: u32,
    currency: Currency,
    valid_hours: Option<u16>,
    #[schemars(length(max = 2))]
    notes: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
struct Activity {
    #[schemars(length(max = 24))]
    name: String,
    morning: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // read through Debug
struct Trip {
    #[schemars(length(max = 24))]
    destination: String,
    #[schemars(range(min = 1, max = 14))]
    days: u8,
    budget_usd: f64,
    #[schemars(length(min = 1, max = 3))]
    activities: Vec<Activity>,
}

const CITIES: &[&str] = &[
    "Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Cairo", "Denver", "Hanoi", "Perth", "Quito",
];

fn system() -> &'static str {
    "You answer with one JSON object and nothing else."
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_parses_on_100_varied_prompts() {
    let engine = engine();
    let before = engine.stats();
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let engine = engine.clone();
        let city = CITIES[i as usize % CITIES.len()];
        // Vary the sampling too: greedy, warm, hot.
        let params = match i % 3 {
            0 => SamplingParams::greedy(),
            1 => SamplingParams::default().with_seed(i),
            _ => SamplingParams::default().with_temperature(1.2).with_seed(i),
        };
        tasks.spawn(async move {
            let kind = i % 3;
            let outcome = match kind {
                0 => {
                    let p = Prompt::system_user(
                        system(),
                        format!("Forecast for {city} on day {i}: temperature, sky, rain chance."),
                    );
                    engine.generate_json::<Forecast>(p, params).await.map(|c| {
                        assert!(c.value.rain_percent <= 100);
                        format!("{:?}", c.value)
                    })
                }
                1 => {
                    let p = Prompt::system_user(
                        system(),
                        format!("Quote a price for service #{i}: a weather report for {city}."),
                    );
                    engine.generate_json::<Quote>(p, params).await.map(|c| {
                        assert!(c.value.notes.len() <= 2);
                        format!("{:?}", c.value)
                    })
                }
                _ => {
                    let p = Prompt::system_user(
                        system(),
                        format!("Plan a trip of {} days to {city}.", 1 + i % 7),
                    );
                    engine.generate_json::<Trip>(p, params).await.map(|c| {
                        assert!((1..=14).contains(&c.value.days));
                        assert!((1..=3).contains(&c.value.activities.len()));
                        format!("{:?}", c.value)
                    })
                }
            };
            (i, outcome)
        });
    }
    let mut parsed = 0;
    let mut failures = Vec::new();
    let mut distinct = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.unwrap();
        match outcome {
            Ok(value) => {
                parsed += 1;
                distinct.insert(value);
            }
            Err(e) => failures.push(format!("prompt {i}: {e}")),
        }
    }
    let after = engine.stats();
    eprintln!(
        "100 structured outputs in {:?}: {} tokens generated, {} prompt tokens, {} decode steps, {} grammar resamples",
        started.elapsed(),
        after.generated_tokens - before.generated_tokens,
        after.prompt_tokens - before.prompt_tokens,
        after.decode_steps - before.decode_steps,
        after.grammar_resamples - before.grammar_resamples,
    );
    assert_eq!(parsed, 100, "failures: {failures:#?}");
    assert!(
        distinct.len() > 50,
        "outputs should vary with the prompts: {}",
        distinct.len()
    );
}

#[tokio::test]
async fn unsupported_schema_is_refused_before_generation() {
    #[derive(Debug, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Ledger {
        balances: std::collections::HashMap<String, u64>,
    }
    let err = engine()
        .generate_json::<Ledger>("balances?", SamplingParams::greedy())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedSchema { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("#/properties/balances/additionalProperties"),
        "{err}"
    );
}

#[tokio::test]
async fn generated_grammars_parse_in_llama_cpp() {
    // llama.cpp's own grammar parser accepts what the converter writes.
    let engine = engine();
    let limits = engine.config().grammar_limits();
    let model = LlamaModel::load_from_file(
        backend().unwrap(),
        support::model_path(),
        &LlamaModelParams::default().with_vocab_only(true),
    )
    .unwrap();
    for grammar in [
        JsonGrammar::for_type::<Forecast>(limits).unwrap(),
        JsonGrammar::for_type::<Quote>(limits).unwrap(),
        JsonGrammar::for_type::<Trip>(limits).unwrap(),
        JsonGrammar::for_type::<Vec<Option<i64>>>(limits).unwrap(),
    ] {
        LlamaSampler::grammar(&model, grammar.as_str(), "root")
            .unwrap_or_else(|e| panic!("{e}: {}", grammar.as_str()));
    }
}

// ---------------------------------------------------------------- determinism

fn story(i: u32) -> Prompt {
    Prompt::Chat(vec![
        ChatMessage::system("You are a concise storyteller."),
        ChatMessage::user(format!("Tell a two-sentence story about robot number {i}.")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_tokens_different_seed_different_tokens() {
    let engine = engine();
    let params = SamplingParams::default()
        .with_temperature(1.0)
        .with_max_tokens(32);
    let run = |seed: u32| {
        let engine = engine.clone();
        async move {
            engine
                .generate(GenerationRequest::new(story(1)).with_params(params.with_seed(seed)))
                .await
                .unwrap()
        }
    };
    let a = run(7).await;
    let b = run(7).await;
    assert_eq!(a.tokens(), b.tokens());
    assert_eq!(a.text(), b.text());
    assert_eq!(a.tokens().len(), 32, "{:?}", a.text());
    let mut differing = 0;
    for seed in [8, 9, 10, 11] {
        if run(seed).await.tokens() != a.tokens() {
            differing += 1;
        }
    }
    assert!(
        differing >= 3,
        "only {differing} of 4 other seeds changed the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_does_not_change_results() {
    // Each request alone (the engine drains its batch), then all eight at once with
    // prompts of different lengths joining mid-flight: the tokens must be identical.
    let engine = engine();
    let requests: Vec<GenerationRequest> = (0..8u32)
        .map(|i| {
            let params = if i % 2 == 0 {
                SamplingParams::greedy()
            } else {
                SamplingParams::default().with_seed(100 + i)
            };
            let prompt = if i % 3 == 0 {
                story(i)
            } else {
                Prompt::user(
                    format!("List {} facts about the number {i}.", 2 + i)
                        .repeat(1 + i as usize % 3),
                )
            };
            GenerationRequest::new(prompt).with_params(params.with_max_tokens(24))
        })
        .collect();
    let mut alone = Vec::new();
    for r in &requests {
        alone.push(
            engine
                .generate(r.clone().with_isolation(Isolation::Alone))
                .await
                .unwrap(),
        );
    }
    let before = engine.stats();
    let mut handles = Vec::new();
    for r in requests.iter().cloned() {
        let engine = engine.clone();
        handles.push(tokio::spawn(
            async move { engine.generate(r).await.unwrap() },
        ));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let together = h.await.unwrap();
        assert_eq!(together.tokens(), alone[i].tokens(), "request {i}");
    }
    let after = engine.stats();
    let steps = after.decode_steps - before.decode_steps;
    let widths = after.batched_sequences - before.batched_sequences;
    // Other tests share the engine, so only check that batching did happen.
    assert!(
        widths > steps,
        "mean batch width {widths}/{steps} should exceed 1"
    );
}

/// Raw llama.cpp check of the claim the engine relies on: a sequence's logits are the
/// same bits whether it is decoded alone or beside seven others, and with 1 or 2
/// threads.
#[test]
fn raw_logits_are_bit_identical_alone_batched_and_across_threads() {
    let model = LlamaModel::load_from_file(
        backend().unwrap(),
        support::model_path(),
        &LlamaModelParams::default(),
    )
    .unwrap();
    let tmpl = model.chat_template(None).unwrap();
    let prompts: Vec<Vec<LlamaToken>> = (0..8)
        .map(|i| {
            let msg = llm::llama_cpp_2::model::LlamaChatMessage::new(
                "user".into(),
                format!("Describe city number {i} in {} words.", 5 + i * 3),
            )
            .unwrap();
            let text = model.apply_chat_template(&tmpl, &[msg], true).unwrap();
            model.vocab().tokenize(text.as_bytes(), false, true)
        })
        .collect();
    let steps = 12;
    let run = |threads: i32, together: bool| -> Vec<Vec<f32>> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(256 * 8))
            .with_n_batch(512)
            .with_n_seq_max(8)
            .with_kv_unified(false)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = model.new_context(backend().unwrap(), params).unwrap();
        let mut batch = LlamaBatch::new(512, 1);
        let seqs: Vec<usize> = if together { (0..8).collect() } else { vec![0] };
        let mut idx = [0i32; 8];
        for &s in &seqs {
            for (p, t) in prompts[s].iter().enumerate() {
                batch
                    .add(*t, p as i32, &[s as i32], p + 1 == prompts[s].len())
                    .unwrap();
            }
            idx[s] = batch.n_tokens() - 1;
        }
        ctx.decode(&mut batch).unwrap();
        let mut pos: Vec<i32> = prompts.iter().map(|p| p.len() as i32).collect();
        let mut greedy: Vec<LlamaSampler> = (0..8).map(|_| LlamaSampler::greedy()).collect();
        let mut logits0 = Vec::new();
        for _ in 0..steps {
            logits0.push(ctx.get_logits_ith(idx[0]).to_vec());
            let next: Vec<(usize, LlamaToken)> = seqs
                .iter()
                .map(|&s| (s, greedy[s].sample(&ctx, idx[s])))
                .collect();
            batch.clear();
            for (s, t) in next {
                batch.add(t, pos[s], &[s as i32], true).unwrap();
                idx[s] = batch.n_tokens() - 1;
                pos[s] += 1;
            }
            ctx.decode(&mut batch).unwrap();
        }
        logits0
    };
    let alone = run(2, false);
    assert!(
        run(2, true) == alone,
        "batched logits differ from single-sequence logits"
    );
    assert!(
        run(1, false) == alone,
        "1-thread logits differ from 2-thread logits"
    );
}

// ---------------------------------------------------------------- attestations

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_verifies_and_fails_on_any_changed_byte() {
    let engine = engine();
    let wallet = Wallet::random();
    let domain = attestation_domain(Some(31337));
    let prompt = Prompt::system_user(system(), "Forecast for Lisbon tomorrow.");
    let forecast = engine
        .generate_json::<Forecast>(prompt.clone(), SamplingParams::default().with_seed(5))
        .await
        .unwrap();
    let record = forecast.completion.record().clone();
    let signed = forecast.completion.attest(&wallet, &domain).unwrap();
    assert_eq!(
        signed.attestation.model_fingerprint,
        engine.fingerprint().to_b256()
    );
    assert_eq!(
        engine
            .verify(&domain, &record, &signed, Some(wallet.address()))
            .await
            .unwrap(),
        wallet.address()
    );

    let field = |e: Error| match e {
        Error::AttestationMismatch { field, .. } => field,
        other => panic!("expected an attestation mismatch, got {other}"),
    };

    // One byte of the output.
    let mut bad = record.clone();
    let mut bytes = bad.output.into_bytes();
    bytes[0] ^= 0x01; // the opening brace becomes 'z'
    bad.output = String::from_utf8(bytes).unwrap();
    assert_eq!(
        field(
            engine
                .verify(&domain, &bad, &signed, None)
                .await
                .unwrap_err()
        ),
        "outputHash"
    );

    // One byte of the prompt (the caller's message; the rendered text no longer matches).
    let mut bad = record.clone();
    bad.prompt = Prompt::system_user(system(), "Forecast for Lisbon tomorrow!");
    assert_eq!(
        field(
            engine
                .verify(&domain, &bad, &signed, None)
                .await
                .unwrap_err()
        ),
        "promptHash"
    );
    // ... and consistently re-rendered: the attested prompt hash no longer matches.
    bad.prompt_text = engine.render(&bad.prompt).unwrap();
    assert_eq!(
        field(
            engine
                .verify(&domain, &bad, &signed, None)
                .await
                .unwrap_err()
        ),
        "promptHash"
    );

    // One byte of the fingerprint, in the record or in the signed attestation.
    let mut bad = record.clone();
    let mut fp = *bad.model.as_bytes();
    fp[0] ^= 0x80;
    bad.model = llm::ModelFingerprint::from_bytes(fp);
    assert_eq!(
        field(
            engine
                .verify(&domain, &bad, &signed, None)
                .await
                .unwrap_err()
        ),
        "modelFingerprint"
    );
    let mut forged = signed.clone();
    forged.attestation.model_fingerprint.0[31] ^= 0x01;
    assert_eq!(
        field(
            engine
                .verify(&domain, &record, &forged, None)
                .await
                .unwrap_err()
        ),
        "signer"
    );

    // The seed is part of what is attested.
    let mut bad = record.clone();
    bad.params = bad.params.with_seed(6);
    assert_eq!(
        field(
            engine
                .verify(&domain, &bad, &signed, None)
                .await
                .unwrap_err()
        ),
        "samplingHash"
    );

    // A seller who signs an output the model did not produce is caught by the re-run.
    let mut invented = record.clone();
    invented.output =
        r#"{"city":"Lisbon","celsius":25,"condition":"Sunny","rain_percent":0}"#.to_owned();
    if invented.output != record.output {
        let lie = llm::SignedAttestation::sign(&wallet, &domain, invented.attestation()).unwrap();
        assert_eq!(
            field(
                engine
                    .verify(&domain, &invented, &lie, None)
                    .await
                    .unwrap_err()
            ),
            "outputHash"
        );
    }
}

// ---------------------------------------------------------------- streaming and limits

#[tokio::test]
async fn tokens_stream_in_order_and_add_up_to_the_completion() {
    let engine = engine();
    let request =
        GenerationRequest::new(story(3)).with_params(SamplingParams::greedy().with_max_tokens(20));
    let mut stream = engine.stream(request.clone()).await.unwrap();
    let mut text = String::new();
    let mut ids = Vec::new();
    while let Some(token) = stream.next_token().await {
        text.push_str(&token.text);
        ids.push(token.id);
    }
    let completion = stream.completion().await.unwrap();
    assert_eq!(completion.text(), text);
    assert_eq!(completion.tokens(), ids.as_slice());
    assert_eq!(completion.finish_reason(), FinishReason::Length);
    assert!(completion.timings().first_token <= completion.timings().total);

    // A dropped stream is cancelled and the engine carries on.
    let stream = engine.stream(request.clone()).await.unwrap();
    drop(stream);
    let again = engine.generate(request).await.unwrap();
    assert_eq!(again.tokens(), completion.tokens());
}

#[tokio::test]
async fn context_overflow_is_a_clear_error() {
    let engine = engine();
    let long = "weather ".repeat(600);
    let err = engine.generate(long.as_str()).await.unwrap_err();
    match &err {
        Error::ContextOverflow {
            prompt_tokens,
            context,
            ..
        } => {
            assert!(*prompt_tokens > 512);
            assert_eq!(*context, 512);
        }
        other => panic!("expected a context overflow, got {other}"),
    }
    assert!(err.to_string().contains("context overflow"), "{err}");
    // Fits alone, but not with the output asked for.
    let err = engine
        .generate(
            GenerationRequest::new("hello")
                .with_params(SamplingParams::greedy().with_max_tokens(600)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                max_tokens: 600,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_broken_grammar_fails_its_request_only() {
    let engine = engine();
    let err = engine
        .generate(GenerationRequest::new("hi").with_grammar("root ::= (\"a\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Llama { .. }), "{err}");
    assert!(err.to_string().contains("grammar"), "{err}");
    let ok = engine
        .generate(GenerationRequest::new("hi").with_grammar("root ::= \"yes\" | \"no\""))
        .await
        .unwrap();
    assert!(ok.text() == "yes" || ok.text() == "no", "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_instead_of_growing() {
    // A separate small engine: one sequence, one queued request.
    let engine = LlmEngine::load(
        support::engine_config()
            .with_max_sequences(1)
            .with_queue_capacity(1),
    )
    .unwrap();
    let request =
        GenerationRequest::new(story(9)).with_params(SamplingParams::greedy().with_max_tokens(48));
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        match engine.try_stream(request.clone()) {
            Ok(s) => streams.push(s),
            Err(Error::QueueFull { capacity: 1 }) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // At most one running, one waiting for a slot and one in the queue.
    assert!(
        streams.len() <= 3 && refused >= 3,
        "{} accepted, {refused} refused",
        streams.len()
    );
    for s in streams {
        assert!(s.completion().await.unwrap().tokens().len() <= 48);
    }
}

#[tokio::test]
async fn closures_run_on_the_inference_thread_and_a_panic_does_not_kill_it() {
    let engine = engine();
    let vocab = engine
        .with_inference_thread(|model| model.n_vocab())
        .await
        .unwrap();
    assert_eq!(vocab as u32, engine.info().vocab_size);
    let name = engine
        .with_inference_thread(|_| std::thread::current().name().map(str::to_owned))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("agora-llm"));
    let err = engine
        .with_inference_thread(|_| -> u32 { panic!("boom") })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EngineStopped { .. }), "{err}");
    let after = engine
        .generate(
            GenerationRequest::new("Say hi.")
                .with_params(SamplingParams::greedy().with_max_tokens(4)),
        )
        .await
        .unwrap();
    assert!(!after.tokens().is_empty());
}
