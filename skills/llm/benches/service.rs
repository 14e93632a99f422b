//! Attested completions per second through `llm::service::LlmService` (task parsing,
//! generation, the signed attestation and its record) against the engine alone
//! (`LlmEngine::generate` of the very same requests), measured in the same run on
//! the same model and thread count.
//!
//! Run: `cargo bench -p llm --features service --bench service`. The model is
//! `$AGORA_MODEL_PATH`, else the default model from `$AGORA_MODEL_CACHE` or
//! `/var/cache/agora/models`; threads are `$AGORA_BENCH_THREADS` or every core.
//!
//! Scenarios (greedy, 32 generated tokens a job, 8 different prompts, so both sides
//! generate the very same tokens): `sequential/*` runs the 8 jobs one after another,
//! `concurrent8/*` all 8 at once (continuous batching). After criterion's report it
//! prints completions/s per scenario and the ratios attested / engine.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use criterion::{Criterion, Throughput};
use llm::service::{InferenceTask, LlmService};
use llm::{GenerationRequest, GrammarLimits, LlmConfig, LlmEngine, Prompt, SamplingParams};
use support::{rate, record, tally, threads};
use wallets::Wallet;

const JOBS: usize = 8;
const TOKENS: u32 = 32;

fn tasks() -> Vec<String> {
    [
        "Write a short poem about the sea.",
        "Explain what a payment channel is.",
        "List three colours and a fruit.",
        "Describe a robot learning to paint.",
        "Tell me about the city of Lisbon.",
        "What is a good name for a cat?",
        "Give advice to a new gardener.",
        "Summarise the plot of a heist film.",
    ]
    .iter()
    .map(|p| {
        InferenceTask::complete(Prompt::user(*p))
            .with_params(SamplingParams::greedy().with_max_tokens(TOKENS))
            .to_task()
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let path = llm::test_utils::model_path();
    let threads = threads();
    eprintln!("model {} threads {threads}", path.display());
    let engine = Arc::new(
        LlmEngine::load(
            LlmConfig::new(&path)
                .with_threads(threads)
                .with_max_sequences(JOBS as u32)
                .with_context_per_sequence(512),
        )
        .unwrap(),
    );
    let service = Arc::new(LlmService::complete(
        engine.clone(),
        Arc::new(Wallet::random()),
        31337,
    ));
    let tasks = tasks();
    // The engine side runs exactly the requests the service derives from the tasks.
    let requests: Vec<GenerationRequest> = tasks
        .iter()
        .map(|t| {
            let r = InferenceTask::parse(t)
                .unwrap()
                .request(GrammarLimits::default())
                .unwrap();
            GenerationRequest::new(r.prompt).with_params(r.params)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Same outputs on both sides.
    rt.block_on(async {
        for (task, req) in tasks.iter().zip(&requests) {
            let attested = service.serve(task).await.unwrap();
            let plain = engine.generate(req.clone()).await.unwrap();
            assert_eq!(attested.result["output"], plain.text());
            assert!(attested.attestation.is_some());
        }
    });

    let run = |name: &'static str, attested: bool, concurrent: bool| {
        let (engine, service, tasks, requests, rt) = (
            engine.clone(),
            service.clone(),
            tasks.clone(),
            requests.clone(),
            &rt,
        );
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    rt.block_on(async {
                        let jobs = (0..JOBS).map(|i| {
                            let (engine, service) = (engine.clone(), service.clone());
                            let (task, req) = (tasks[i].clone(), requests[i].clone());
                            async move {
                                if attested {
                                    let out = service.serve(&task).await.unwrap();
                                    std::hint::black_box(out);
                                } else {
                                    let out = engine.generate(req).await.unwrap();
                                    std::hint::black_box(out);
                                }
                            }
                        });
                        if concurrent {
                            let handles: Vec<_> = jobs.map(tokio::spawn).collect();
                            for h in handles {
                                h.await.unwrap();
                            }
                        } else {
                            for job in jobs {
                                job.await;
                            }
                        }
                    });
                    let dt = t0.elapsed();
                    record(name, JOBS as u64, dt);
                    total += dt;
                }
                total
            })
        }
    };
    for (group_name, concurrent) in [("sequential", false), ("concurrent8", true)] {
        let mut group = c.benchmark_group(group_name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(15))
            .throughput(Throughput::Elements(JOBS as u64));
        let (engine_name, attested_name) = if concurrent {
            ("concurrent8/engine", "concurrent8/attested")
        } else {
            ("sequential/engine", "sequential/attested")
        };
        group.bench_function("engine", run(engine_name, false, concurrent));
        group.bench_function("attested", run(attested_name, true, concurrent));
        group.finish();
    }
}

fn summary() {
    println!(
        "\n=== attested completions through LlmService vs the engine alone (same run, model, threads) ==="
    );
    for (name, (n, d)) in tally().lock().unwrap().iter() {
        println!(
            "{name:24} {:8.2} completions/s  ({n} in {:.2?})",
            *n as f64 / d.as_secs_f64(),
            d
        );
    }
    for scenario in ["sequential", "concurrent8"] {
        println!(
            "{scenario:12} attested / engine: {:.3}x",
            rate(&format!("{scenario}/attested")) / rate(&format!("{scenario}/engine"))
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
