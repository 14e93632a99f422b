//! Inference throughput of `llm::LlmEngine` against raw llama-cpp-2 loops,
//! measured in the same run, on the same model and thread count.
//!
//! Run: `cargo bench -p llm --bench llm` (or build with `cargo build --release -p
//! llm --bench llm` and run the binary with `--bench`). The model is
//! `$AGORA_MODEL_PATH`, else the default model from `$AGORA_MODEL_CACHE` or
//! `/var/cache/agora/models` (fetched there if missing); threads are
//! `$AGORA_BENCH_THREADS` or every core.
//!
//! The raw loops run on the engine's inference thread
//! (`LlmEngine::with_inference_thread`), so both sides use the same llama.cpp
//! (OpenMP) worker threads; two thread teams on the same cores would slow each
//! other down and skew the comparison.
//!
//! Scenarios (all greedy, so ours and raw generate the very same tokens):
//! - `single/*`: one stream, a short prompt, 128 generated tokens;
//! - `prompt/*`: a ~400-token prompt, one generated token;
//! - `concurrent8/*`: 8 different prompts of 64 tokens each: ours with 8 concurrent
//!   requests (continuous batching), ours with the 8 requests one after another, and
//!   a raw loop decoding the 8 sequences in one batch.
//!
//! After criterion's report it prints tokens/s per scenario and the ratios.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use criterion::{Criterion, Throughput};
use llm::llama_cpp_2::context::params::LlamaContextParams;
use llm::llama_cpp_2::context::LlamaContext;
use llm::llama_cpp_2::llama_batch::LlamaBatch;
use llm::llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llm::llama_cpp_2::sampling::LlamaSampler;
use llm::llama_cpp_2::token::LlamaToken;
use llm::{backend, Completion, GenerationRequest, LlmConfig, LlmEngine, Prompt, SamplingParams};
use support::{rate, record, tally, threads};

const SINGLE_TOKENS: u32 = 128;
const CONCURRENT: usize = 8;
const CONCURRENT_TOKENS: u32 = 64;

/// A raw llama-cpp-2 greedy loop, run on the engine's inference thread (see
/// `LlmEngine::with_inference_thread`) with a context of its own.
#[derive(Clone)]
struct Raw {
    prompts: Vec<String>,
    max_tokens: u32,
    threads: i32,
}

impl Raw {
    /// Runs the loop `iters` times; returns the time spent in the loops and the
    /// tokens generated.
    fn run(&self, model: &LlamaModel, iters: u64) -> (Duration, u64) {
        let n_seq = self.prompts.len() as u32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(1024 * n_seq))
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_seq_max(n_seq)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = model.new_context(backend().unwrap(), params).unwrap();
        let tmpl = model.chat_template(None).unwrap();
        let vocab = model.vocab();
        let prompts: Vec<Vec<LlamaToken>> = self
            .prompts
            .iter()
            .map(|p| {
                let msg = LlamaChatMessage::new("user".into(), p.clone()).unwrap();
                let text = model.apply_chat_template(&tmpl, &[msg], true).unwrap();
                vocab.tokenize(text.as_bytes(), vocab.should_add_bos(), true)
            })
            .collect();
        let mut time = Duration::ZERO;
        let mut tokens = 0;
        for _ in 0..iters {
            ctx.clear_kv_cache();
            let t0 = Instant::now();
            tokens += generate(model, &mut ctx, &prompts, self.max_tokens);
            time += t0.elapsed();
        }
        (time, tokens)
    }
}

/// Greedy decoding of several sequences in one batch; returns generated tokens.
fn generate(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    prompts: &[Vec<LlamaToken>],
    max: u32,
) -> u64 {
    let mut batch = LlamaBatch::new(512, 1);
    let mut idx = Vec::new();
    for (s, p) in prompts.iter().enumerate() {
        for (i, t) in p.iter().enumerate() {
            batch
                .add(*t, i as i32, &[s as i32], i + 1 == p.len())
                .unwrap();
        }
        idx.push(batch.n_tokens() - 1);
    }
    ctx.decode(&mut batch).unwrap();
    let vocab = model.vocab();
    let mut samplers: Vec<LlamaSampler> = prompts.iter().map(|_| LlamaSampler::greedy()).collect();
    let mut pos: Vec<i32> = prompts.iter().map(|p| p.len() as i32).collect();
    let mut live: Vec<bool> = vec![true; prompts.len()];
    let mut counts = vec![0u32; prompts.len()];
    let mut total = 0;
    loop {
        batch.clear();
        for s in 0..prompts.len() {
            if !live[s] {
                continue;
            }
            let t = samplers[s].sample(ctx, idx[s]);
            if vocab.is_eog(t) {
                live[s] = false;
                continue;
            }
            total += 1;
            counts[s] += 1;
            if counts[s] >= max {
                live[s] = false;
                continue;
            }
            batch.add(t, pos[s], &[s as i32], true).unwrap();
            idx[s] = batch.n_tokens() - 1;
            pos[s] += 1;
        }
        if batch.n_tokens() == 0 {
            return total;
        }
        ctx.decode(&mut batch).unwrap();
    }
}

fn concurrent_prompts() -> Vec<String> {
    (0..CONCURRENT)
        .map(|i| format!("Write a long story about a travel agent who books trip number {i} to a distant city."))
        .collect()
}

fn long_prompt() -> String {
    "Summarise the following weather log. ".to_owned()
        + &(0..40)
            .map(|d| format!("Day {d}: sunny, {} degrees. ", 10 + d % 15))
            .collect::<String>()
}

fn bench(c: &mut Criterion) {
    let path = llm::test_utils::model_path();
    let threads = threads();
    eprintln!("model {} threads {threads}", path.display());
    let engine = Arc::new(
        LlmEngine::load(
            LlmConfig::new(&path)
                .with_threads(threads)
                .with_max_sequences(CONCURRENT as u32)
                .with_context_per_sequence(1024),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let raw_bench = |name: &'static str, raw: Raw| {
        let engine = engine.clone();
        let rt = &rt;
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                let raw = raw.clone();
                let (time, tokens) = rt
                    .block_on(engine.with_inference_thread(move |model| raw.run(model, iters)))
                    .unwrap();
                record(name, tokens, time);
                time
            })
        }
    };
    let ours_bench = |name: &'static str,
                      reqs: Vec<GenerationRequest>,
                      concurrent: bool,
                      count_prompt: bool| {
        let engine = engine.clone();
        let rt = &rt;
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    let done: Vec<Completion> = rt.block_on(async {
                        if concurrent {
                            let handles: Vec<_> = reqs
                                .iter()
                                .map(|r| {
                                    let (engine, r) = (engine.clone(), r.clone());
                                    tokio::spawn(async move { engine.generate(r).await.unwrap() })
                                })
                                .collect();
                            let mut out = Vec::new();
                            for h in handles {
                                out.push(h.await.unwrap());
                            }
                            out
                        } else {
                            let mut out = Vec::new();
                            for r in &reqs {
                                out.push(engine.generate(r.clone()).await.unwrap());
                            }
                            out
                        }
                    });
                    let dt = t0.elapsed();
                    let tokens: usize = done
                        .iter()
                        .map(|c| {
                            if count_prompt {
                                c.prompt_tokens()
                            } else {
                                c.tokens().len()
                            }
                        })
                        .sum();
                    record(name, tokens as u64, dt);
                    total += dt;
                }
                total
            })
        }
    };
    let greedy = |p: &str, max: u32| {
        GenerationRequest::new(Prompt::user(p))
            .with_params(SamplingParams::greedy().with_max_tokens(max))
    };
    let threads = threads as i32;

    // ---- single stream
    let story = "Write a long story about a robot who learns to paint.";
    let mut group = c.benchmark_group("single");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(u64::from(SINGLE_TOKENS)));
    group.bench_function(
        "raw",
        raw_bench(
            "single/raw",
            Raw {
                prompts: vec![story.to_owned()],
                max_tokens: SINGLE_TOKENS,
                threads,
            },
        ),
    );
    group.bench_function(
        "ours",
        ours_bench(
            "single/ours",
            vec![greedy(story, SINGLE_TOKENS)],
            false,
            false,
        ),
    );
    group.finish();

    // ---- prompt processing
    let long = long_prompt();
    let mut group = c.benchmark_group("prompt");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("raw", {
        // One generated token: count the prompt tokens instead.
        let engine = engine.clone();
        let rt = &rt;
        let raw = Raw {
            prompts: vec![long.clone()],
            max_tokens: 1,
            threads,
        };
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                let raw = raw.clone();
                let (time, n_prompt) = rt
                    .block_on(engine.with_inference_thread(move |model| {
                        let tmpl = model.chat_template(None).unwrap();
                        let msg =
                            LlamaChatMessage::new("user".into(), raw.prompts[0].clone()).unwrap();
                        let text = model.apply_chat_template(&tmpl, &[msg], true).unwrap();
                        let n = model
                            .vocab()
                            .tokenize(text.as_bytes(), model.vocab().should_add_bos(), true)
                            .len() as u64;
                        (raw.run(model, iters).0, n * iters)
                    }))
                    .unwrap();
                record("prompt/raw", n_prompt, time);
                time
            })
        }
    });
    group.bench_function(
        "ours",
        ours_bench("prompt/ours", vec![greedy(&long, 1)], false, true),
    );
    group.finish();

    // ---- 8 concurrent requests
    let prompts = concurrent_prompts();
    let reqs: Vec<GenerationRequest> = prompts
        .iter()
        .map(|p| greedy(p, CONCURRENT_TOKENS))
        .collect();
    let mut group = c.benchmark_group("concurrent8");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(
        CONCURRENT as u64 * u64::from(CONCURRENT_TOKENS),
    ));
    group.bench_function(
        "raw_batched",
        raw_bench(
            "concurrent8/raw_batched",
            Raw {
                prompts: prompts.clone(),
                max_tokens: CONCURRENT_TOKENS,
                threads,
            },
        ),
    );
    group.bench_function(
        "ours_batched",
        ours_bench("concurrent8/ours_batched", reqs.clone(), true, false),
    );
    group.bench_function(
        "ours_sequential",
        ours_bench("concurrent8/ours_sequential", reqs, false, false),
    );
    group.finish();
    let stats = engine.stats();
    eprintln!(
        "engine: {} decode steps, mean batch width {:.2}",
        stats.decode_steps,
        stats.batched_sequences as f64 / stats.decode_steps.max(1) as f64
    );
}

fn summary() {
    println!("\n=== llm vs raw llama-cpp-2 (tokens/s, same run, same model and threads) ===");
    for (name, (n, d)) in tally().lock().unwrap().iter() {
        println!(
            "{name:30} {:8.1} tok/s  ({n} tokens in {:.2?})",
            *n as f64 / d.as_secs_f64(),
            d
        );
    }
    let ratio = |a: &str, b: &str| rate(a) / rate(b);
    println!(
        "single-stream generation, ours / raw loop:        {:.3}x",
        ratio("single/ours", "single/raw")
    );
    println!(
        "prompt processing, ours / raw:                    {:.3}x",
        ratio("prompt/ours", "prompt/raw")
    );
    println!(
        "8 concurrent, ours batched / ours sequential:     {:.3}x",
        ratio("concurrent8/ours_batched", "concurrent8/ours_sequential")
    );
    println!(
        "8 concurrent, ours batched / raw batched loop:    {:.3}x",
        ratio("concurrent8/ours_batched", "concurrent8/raw_batched")
    );
    println!(
        "8 concurrent, raw batched / ours single-stream:   {:.3}x",
        ratio("concurrent8/raw_batched", "single/ours")
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
