//! The inference thread: continuous batching over one llama.cpp context.
//!
//! Each step the thread (1) admits queued requests into free sequence slots, (2) builds
//! one batch holding the next token of every generating sequence plus as much pending
//! prompt as fits in `batch_tokens`, (3) decodes it, (4) samples a token for every
//! sequence whose logits were computed, streams it, and retires sequences that are
//! finished or whose caller went away, clearing their KV cells so the sequence id can
//! be reused. Requests thus join and leave the running batch between decode steps.
//!
//! The context keeps one KV stream per sequence (`kv_unified = false`), so every
//! sequence owns exactly `context_per_sequence` cells and always starts at cell 0:
//! the memory layout, and with it the arithmetic, of a sequence does not depend on
//! which other sequences share its batches.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::attestation::InferenceRecord;
use super::generation::{Completion, Counters, Event, FinishReason, Timings, Token};
use super::info::backend;
use super::sampling::SamplingParams;
use crate::{Error, Result};

/// What the inference thread receives.
pub(crate) enum Work {
    /// A generation request.
    Generate(Box<Job>),
    /// A closure to run on the inference thread while no request is decoding.
    Exec(Box<dyn FnOnce(&LlamaModel) + Send>),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Generate(job) => f.debug_tuple("Generate").field(job).finish(),
            Self::Exec(_) => f.write_str("Exec"),
        }
    }
}

impl Work {
    /// Runs with nothing else decoding.
    fn alone(&self) -> bool {
        match self {
            Self::Generate(job) => job.alone,
            Self::Exec(_) => true,
        }
    }
}

/// A generation request as the inference thread receives it.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) tokens: Vec<LlamaToken>,
    pub(crate) record: InferenceRecord,
    pub(crate) alone: bool,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) submitted: Instant,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerConfig {
    pub(crate) threads: i32,
    pub(crate) context_per_sequence: u32,
    pub(crate) max_sequences: u32,
    pub(crate) batch_tokens: u32,
}

/// Starts the inference thread; returns once its context exists (or failed).
pub(crate) fn spawn(
    model: Arc<LlamaModel>,
    config: WorkerConfig,
    rx: mpsc::Receiver<Work>,
    counters: Arc<Counters>,
) -> Result<JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name("agora-llm".to_owned())
        .spawn(move || {
            let ctx = match new_context(&model, config) {
                Ok(ctx) => {
                    let _ = ready_tx.send(Ok(()));
                    ctx
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut worker = Worker::new(&model, ctx, config, counters);
            worker.run(rx);
        })
        .map_err(|e| Error::llama("spawning the inference thread", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::EngineStopped {
            reason: "the inference thread died while creating its context".to_owned(),
        }),
    }
}

fn new_context(model: &LlamaModel, config: WorkerConfig) -> Result<LlamaContext<'_>> {
    let n_ctx = config
        .context_per_sequence
        .checked_mul(config.max_sequences)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| Error::Config("context size overflows".to_owned()))?;
    let params = LlamaContextParams::default()
        .with_n_ctx(Some(n_ctx))
        .with_n_batch(config.batch_tokens)
        .with_n_ubatch(config.batch_tokens)
        .with_n_seq_max(config.max_sequences)
        .with_kv_unified(false)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads);
    model
        .new_context(backend()?, params)
        .map_err(|e| Error::llama("creating the context", e))
}

fn has_penalties(params: &SamplingParams) -> bool {
    (params.repeat_penalty() - 1.0).abs() > f32::EPSILON && params.repeat_last_n() > 0
}

/// Builds the sampler chain for `params` (without the grammar, which is separate).
pub(crate) fn sampler_chain(model: &LlamaModel, params: &SamplingParams) -> LlamaSampler {
    let mut stages = Vec::new();
    if has_penalties(params) {
        stages.push(LlamaSampler::penalties(
            model.n_vocab(),
            i32::try_from(params.repeat_last_n()).unwrap_or(i32::MAX),
            params.repeat_penalty(),
            0.0,
            0.0,
        ));
    }
    if params.is_greedy() {
        stages.push(LlamaSampler::greedy());
    } else {
        if params.top_k() > 0 {
            stages.push(LlamaSampler::top_k(
                i32::try_from(params.top_k()).unwrap_or(i32::MAX),
            ));
        }
        if params.top_p() < 1.0 {
            stages.push(LlamaSampler::top_p(params.top_p(), 1));
        }
        if params.min_p() > 0.0 {
            stages.push(LlamaSampler::min_p(params.min_p(), 1));
        }
        stages.push(LlamaSampler::temp(params.temperature()));
        stages.push(LlamaSampler::dist(params.seed()));
    }
    LlamaSampler::chain(stages, true)
}

struct Slot {
    seq: i32,
    job: Job,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// Position of the next token fed.
    pos: i32,
    chain: LlamaSampler,
    /// The chain has no stage that remembers accepted tokens (no penalties).
    stateless_chain: bool,
    grammar: Option<LlamaSampler>,
    /// Sampled but not yet fed.
    pending: Option<LlamaToken>,
    /// Index in the current batch whose logits belong to this slot.
    logits_at: Option<i32>,
    generated: Vec<i32>,
    bytes: Vec<u8>,
    /// Bytes of `bytes` already streamed as text.
    streamed: usize,
    started: Option<Duration>,
    first_token: Option<Duration>,
    finish: Option<FinishReason>,
    /// The latest token, handed to the caller right after the next decode (see
    /// [`Worker::step`]) or when the slot retires.
    unsent: Option<Token>,
}

impl Slot {
    /// Sends the held-back token; a caller that went away cancels the slot.
    fn flush(&mut self) {
        if let Some(token) = self.unsent.take() {
            if self.job.events.try_send(Event::Token(token)).is_err() {
                self.finish = Some(FinishReason::Stop);
                self.job.events = closed_sender();
            }
        }
    }
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    config: WorkerConfig,
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    free: Vec<i32>,
    waiting: Option<Work>,
    counters: Arc<Counters>,
    piece: Vec<u8>,
}

impl<'m> Worker<'m> {
    fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        config: WorkerConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let n_seq = i32::try_from(config.max_sequences).unwrap_or(1);
        Self {
            model,
            ctx,
            config,
            batch: LlamaBatch::new(config.batch_tokens as usize, 1),
            slots: Vec::new(),
            // Lowest ids first.
            free: (0..n_seq).rev().collect(),
            waiting: None,
            counters,
            piece: Vec::with_capacity(32),
        }
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Work>) {
        let mut open = true;
        loop {
            if self.slots.is_empty() && self.waiting.is_none() {
                if !open {
                    return;
                }
                match rx.blocking_recv() {
                    Some(job) => self.waiting = Some(job),
                    None => return,
                }
            }
            open = self.admit(&mut rx, open);
            if self.slots.is_empty() {
                continue;
            }
            self.step();
        }
    }

    /// Moves queued jobs into free slots; returns whether the queue is still open.
    fn admit(&mut self, rx: &mut mpsc::Receiver<Work>, mut open: bool) -> bool {
        loop {
            // A request decoded alone runs with nothing beside it.
            if self.slots.iter().any(|s| s.job.alone) {
                return open;
            }
            let work = match self.waiting.take() {
                Some(work) => work,
                None if open && !self.free.is_empty() => match rx.try_recv() {
                    Ok(work) => work,
                    Err(mpsc::error::TryRecvError::Empty) => return open,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        return open;
                    }
                },
                None => return open,
            };
            if (work.alone() && !self.slots.is_empty()) || self.free.is_empty() {
                self.waiting = Some(work);
                return open;
            }
            let job = match work {
                Work::Generate(job) => *job,
                Work::Exec(f) => {
                    f(self.model);
                    continue;
                }
            };
            if job.events.is_closed() {
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(seq) = self.free.pop() else {
                self.waiting = Some(Work::Generate(Box::new(job)));
                return open;
            };
            match self.slot(seq, job) {
                Ok(slot) => self.slots.push(slot),
                Err(failed) => {
                    let (job, e) = *failed;
                    self.free.push(seq);
                    self.counters.requests.fetch_add(1, Ordering::Relaxed);
                    let _ = job.events.try_send(Event::Failed(e));
                }
            }
        }
    }

    /// A slot for `job`, or the job back with the reason it cannot run.
    fn slot(&self, seq: i32, job: Job) -> std::result::Result<Slot, Box<(Job, Error)>> {
        let chain = sampler_chain(self.model, &job.record.params);
        let grammar = match job.record.grammar.as_deref() {
            Some(g) => match LlamaSampler::grammar(self.model, g, "root") {
                Ok(s) => Some(s),
                Err(e) => return Err(Box::new((job, Error::llama("parsing the grammar", e)))),
            },
            None => None,
        };
        let capacity = job.record.params.max_tokens() as usize;
        let stateless_chain = !has_penalties(&job.record.params);
        Ok(Slot {
            seq,
            job,
            fed: 0,
            pos: 0,
            chain,
            stateless_chain,
            grammar,
            pending: None,
            logits_at: None,
            generated: Vec::with_capacity(capacity),
            bytes: Vec::with_capacity(capacity * 4),
            streamed: 0,
            started: None,
            first_token: None,
            finish: None,
            unsent: None,
        })
    }

    /// One decode step over every slot.
    fn step(&mut self) {
        self.batch.clear();
        let budget = self.config.batch_tokens as usize;
        let mut used = 0usize;
        let mut in_batch = 0u64;
        // Generating sequences first: one token each.
        for slot in &mut self.slots {
            slot.logits_at = None;
            if let Some(token) = slot.pending.take() {
                if self.batch.add(token, slot.pos, &[slot.seq], true).is_ok() {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                    slot.pos += 1;
                    used += 1;
                    in_batch += 1;
                }
            }
        }
        // Then as much pending prompt as fits.
        let now = Instant::now();
        for slot in &mut self.slots {
            let remaining = slot.job.tokens.len() - slot.fed;
            if remaining == 0 || used >= budget {
                continue;
            }
            if slot.started.is_none() {
                slot.started = Some(now.duration_since(slot.job.submitted));
            }
            let take = remaining.min(budget - used);
            let chunk = slot
                .job
                .tokens
                .get(slot.fed..slot.fed + take)
                .unwrap_or(&[]);
            let last_of_prompt = slot.fed + take == slot.job.tokens.len();
            let mut added = 0;
            for (i, token) in chunk.iter().enumerate() {
                let logits = last_of_prompt && i + 1 == take;
                if self
                    .batch
                    .add(*token, slot.pos, &[slot.seq], logits)
                    .is_err()
                {
                    break;
                }
                slot.pos += 1;
                added += 1;
            }
            slot.fed += added;
            used += added;
            in_batch += 1;
            if last_of_prompt && added == take {
                slot.logits_at = Some(self.batch.n_tokens() - 1);
            }
            self.counters
                .prompt_tokens
                .fetch_add(added as u64, Ordering::Relaxed);
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            // Nothing in this batch can be trusted: fail every slot in it.
            let reason = e.to_string();
            for slot in &mut self.slots {
                slot.finish = Some(FinishReason::Stop);
                let _ = slot
                    .job
                    .events
                    .try_send(Event::Failed(Error::llama("decode", reason.clone())));
                slot.generated.clear();
                slot.job.events = closed_sender();
            }
            self.retire();
            return;
        }
        // Tokens are handed to callers now, between decoding and sampling, rather than
        // right before the next decode: a caller's thread that wakes up then finds a
        // core the sampler leaves idle instead of preempting a decoding thread (on
        // two cores that made single-stream generation ~15% slower).
        for slot in &mut self.slots {
            slot.flush();
        }
        self.counters.decode_steps.fetch_add(1, Ordering::Relaxed);
        self.counters
            .batched_sequences
            .fetch_add(in_batch, Ordering::Relaxed);

        let eos = self.model.vocab().eos();
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let Some(idx) = slot.logits_at else { continue };
            let (token, resampled) = sample(&self.ctx, slot, idx, eos);
            if resampled {
                self.counters
                    .grammar_resamples
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.accept(i, token);
        }
        self.retire();
    }

    /// Records a sampled token for slot `i`: stream it, or finish the slot.
    fn accept(&mut self, i: usize, token: LlamaToken) {
        let vocab = self.model.vocab();
        let is_eog = vocab.is_eog(token);
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.first_token.is_none() {
            slot.first_token = Some(slot.job.submitted.elapsed());
        }
        if is_eog {
            slot.finish = Some(FinishReason::Stop);
            return;
        }
        slot.generated.push(token.0);
        self.counters
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        self.piece.clear();
        vocab.token_to_piece_into(token, &mut self.piece, false, None);
        slot.bytes.extend_from_slice(&self.piece);
        let text = complete_utf8(&slot.bytes, &mut slot.streamed);
        slot.flush();
        slot.unsent = Some(Token { id: token.0, text });
        if slot.finish.is_some() {
            return;
        }
        if slot.generated.len() >= slot.job.record.params.max_tokens() as usize {
            slot.finish = Some(FinishReason::Length);
        } else {
            slot.pending = Some(token);
        }
    }

    /// Removes finished and cancelled slots, frees their KV cells and sequence ids,
    /// and sends their completions.
    fn retire(&mut self) {
        let mut i = 0;
        while i < self.slots.len() {
            let done = self
                .slots
                .get(i)
                .is_some_and(|s| s.finish.is_some() || s.job.events.is_closed());
            if !done {
                i += 1;
                continue;
            }
            let mut slot = self.slots.swap_remove(i);
            slot.flush();
            // Whole sequence: never fails for a valid id.
            let _ =
                self.ctx
                    .clear_kv_cache_seq(Some(u32::try_from(slot.seq).unwrap_or(0)), None, None);
            self.free.push(slot.seq);
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(finish) = slot.finish {
                if !slot.job.events.is_closed() {
                    let total = slot.job.submitted.elapsed();
                    let timings = Timings {
                        queued: slot.started.unwrap_or_default(),
                        first_token: slot.first_token.unwrap_or(total),
                        total,
                    };
                    let mut record = slot.job.record;
                    record.output = String::from_utf8_lossy(&slot.bytes).into_owned();
                    let completion = Completion::new(
                        record,
                        slot.generated,
                        slot.job.tokens.len(),
                        finish,
                        timings,
                    );
                    let _ = slot.job.events.try_send(Event::Done(Box::new(completion)));
                }
            }
        }
        // Keep the lowest free ids on top so layouts stay predictable.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

/// A sender whose receiver is gone, to mark a slot as cancelled.
fn closed_sender() -> mpsc::Sender<Event> {
    let (tx, _) = mpsc::channel(1);
    tx
}

/// Samples the next token of `slot` from the logits at batch index `idx`; returns it
/// and whether the grammar forced a resample.
///
/// Without a grammar the chain samples straight from the context. With one, the
/// chain's pick is kept when the grammar allows it (the common case, and cheap: one
/// token checked); otherwise the grammar masks the full candidate list and the chain
/// samples again, as llama.cpp's `common_sampler` does.
fn sample(
    ctx: &LlamaContext<'_>,
    slot: &mut Slot,
    idx: i32,
    eos: LlamaToken,
) -> (LlamaToken, bool) {
    let Some(grammar) = slot.grammar.as_mut() else {
        return (slot.chain.sample(ctx, idx), false);
    };
    let first = if slot.stateless_chain {
        // The chain keeps no history (no penalties), so letting it accept its own
        // pick costs nothing even when the grammar then rejects it.
        Some(slot.chain.sample(ctx, idx))
    } else {
        let mut candidates = ctx.token_data_array_ith(idx);
        candidates.apply_sampler(&mut slot.chain);
        candidates.selected_token()
    };
    let (token, resampled) = match first {
        Some(t) if grammar_allows(grammar, t) => (t, false),
        _ => {
            let mut candidates = ctx.token_data_array_ith(idx);
            candidates.apply_sampler(grammar);
            candidates.apply_sampler(&mut slot.chain);
            (candidates.selected_token().unwrap_or(eos), true)
        }
    };
    if !slot.stateless_chain {
        slot.chain.accept(token);
    }
    if grammar.try_accept(token).is_err() {
        // Cannot happen for a token the grammar allowed; end the output cleanly.
        slot.finish = Some(FinishReason::Stop);
    }
    (token, resampled)
}

fn grammar_allows(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
    single.apply_sampler(grammar);
    single.data.first().is_some_and(|d| d.logit().is_finite())
}

/// The text of `bytes[*streamed..]` up to the last complete UTF-8 character; advances
/// `streamed` past it. Invalid sequences are replaced, incomplete tails wait.
fn complete_utf8(bytes: &[u8], streamed: &mut usize) -> String {
    let tail = bytes.get(*streamed..).unwrap_or(&[]);
    match std::str::from_utf8(tail) {
        Ok(s) => {
            *streamed = bytes.len();
            s.to_owned()
        }
        Err(e) => {
            let (valid, rest) = tail.split_at(e.valid_up_to());
            let mut out = String::from_utf8_lossy(valid).into_owned();
            match e.error_len() {
                // Incomplete character at the end: wait for the next token.
                None => *streamed += valid.len(),
                Some(bad) => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    *streamed += valid.len() + bad;
                    let mut more = *streamed;
                    out.push_str(&complete_utf8(bytes, &mut more));
                    *streamed = more;
                    let _ = rest;
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::complete_utf8;

    #[test]
    fn utf8_streaming_waits_for_whole_characters() {
        let all = "aé€😀".as_bytes();
        let mut streamed = 0;
        let mut out = String::new();
        for end in 1..=all.len() {
            out.push_str(&complete_utf8(&all[..end], &mut streamed));
        }
        assert_eq!(out, "aé€😀");
        let mut s = 0;
        assert_eq!(complete_utf8(b"a\xffb", &mut s), "a\u{fffd}b");
        assert_eq!(s, 3);
    }
}
