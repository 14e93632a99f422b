//! What a buyer asks an LLM seller for: [`InferenceTask`], the task text of the
//! `llm.complete` and `llm.extract` services.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::with_shape_hint;
use crate::grammar::{GrammarLimits, JsonGrammar};
use crate::sampling::{ChatMessage, Prompt, SamplingParams};

/// The skill kind of plain completions.
pub const COMPLETE_KIND: &str = "llm.complete";
/// The skill kind of structured extractions (output constrained by a JSON Schema).
pub const EXTRACT_KIND: &str = "llm.extract";

/// `max_tokens` of an `llm.complete` task that names none.
pub const DEFAULT_MAX_TOKENS: u32 = 128;
/// Longest task text accepted, in bytes.
pub const MAX_TASK_BYTES: usize = 64 * 1024;
/// Most bytes of prompt text (all messages together).
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// Most chat messages in a prompt.
pub const MAX_MESSAGES: usize = 64;
/// Longest JSON Schema of an `llm.extract` task, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;

/// Which of the two services a task is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InferenceKind {
    /// `llm.complete`: free text.
    Complete,
    /// `llm.extract`: a JSON value of the task's schema.
    Extract,
}

impl InferenceKind {
    /// The skill kind sellers register ([`COMPLETE_KIND`], [`EXTRACT_KIND`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => COMPLETE_KIND,
            Self::Extract => EXTRACT_KIND,
        }
    }

    /// The kind named `kind`, if it is one of the two.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            COMPLETE_KIND => Some(Self::Complete),
            EXTRACT_KIND => Some(Self::Extract),
            _ => None,
        }
    }
}

/// One inference job, as a buyer asks for it: the prompt, the sampling parameters
/// (seed included) and, for `llm.extract`, the JSON Schema the output must satisfy.
///
/// Its task text ([`InferenceTask::to_task`], parsed back by [`InferenceTask::parse`])
/// is a JSON object:
///
/// ```json
/// {"prompt": "Name a colour.", "seed": 7, "maxTokens": 16, "temperature": 0.7}
/// {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
/// {"prompt": {"text": "raw text, tokenized as is"}}
/// {"prompt": "Weather in Oslo as JSON.", "schema": {"type": "object", "properties": {...}}}
/// ```
///
/// `prompt` is a user message (a string), chat messages (an array), or raw text
/// (`{"text": …}`). The sampling fields (`temperature`, `topK`, `topP`, `minP`,
/// `repeatPenalty`, `repeatLastN`, `seed`, `maxTokens`) default to
/// [`SamplingParams::default`]'s, except `maxTokens`: [`DEFAULT_MAX_TOKENS`] for a
/// completion, the schema's longest output for an extraction. Unknown fields are
/// refused. The seller and the buyer derive the same request from the same text
/// ([`InferenceTask::request`]), which is what lets the buyer check the attested
/// record against what it asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceTask {
    prompt: Prompt,
    params: SamplingParams,
    max_tokens: Option<u32>,
    schema: Option<Value>,
}

/// The JSON Schema of a task's text (what an x402 or A2A client sends as the request
/// body): an [`InferenceTask`] as JSON.
pub fn task_schema() -> Value {
    schemars::schema_for!(TaskWire).to_value()
}

/// The task text's JSON form.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskWire {
    prompt: PromptWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat_last_n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum PromptWire {
    User(String),
    Chat(Vec<ChatMessage>),
    Raw(RawText),
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawText {
    text: String,
}

/// What the seller runs for a task: the prompt as sent to the engine, the sampling
/// parameters with `max_tokens` resolved, and the grammar of an extraction.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceRequest {
    /// The prompt the engine is given (for an extraction, a chat prompt carries the
    /// schema's shape in its system message, as [`crate::LlmEngine::generate_json`]
    /// does).
    pub prompt: Prompt,
    /// The sampling parameters.
    pub params: SamplingParams,
    /// The grammar (extractions only).
    pub grammar: Option<JsonGrammar>,
}

impl InferenceTask {
    /// A completion of `prompt` with default sampling (seed 0,
    /// [`DEFAULT_MAX_TOKENS`]).
    pub fn complete(prompt: impl Into<Prompt>) -> Self {
        Self {
            prompt: prompt.into(),
            params: SamplingParams::default(),
            max_tokens: None,
            schema: None,
        }
    }

    /// An extraction: a JSON value of `schema` from `prompt`.
    pub fn extract(prompt: impl Into<Prompt>, schema: Value) -> Self {
        Self {
            schema: Some(schema),
            ..Self::complete(prompt)
        }
    }

    /// Sets the sampling parameters, `max_tokens` included.
    #[must_use]
    pub fn with_params(mut self, params: SamplingParams) -> Self {
        self.params = params;
        self.max_tokens = Some(params.max_tokens());
        self
    }

    /// The service the task is for.
    pub fn kind(&self) -> InferenceKind {
        if self.schema.is_some() {
            InferenceKind::Extract
        } else {
            InferenceKind::Complete
        }
    }

    /// The prompt, as the buyer gave it.
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// The schema of an extraction.
    pub fn schema(&self) -> Option<&Value> {
        self.schema.as_ref()
    }

    /// The task text.
    pub fn to_task(&self) -> String {
        let p = &self.params;
        let default = SamplingParams::default();
        let differs = |a: f32, b: f32| (a.to_bits() != b.to_bits()).then_some(a);
        let wire = TaskWire {
            prompt: match &self.prompt {
                Prompt::Chat(messages) => match messages.as_slice() {
                    [one] if one.role() == crate::Role::User => {
                        PromptWire::User(one.content().to_owned())
                    }
                    _ => PromptWire::Chat(messages.clone()),
                },
                Prompt::Text(text) => PromptWire::Raw(RawText { text: text.clone() }),
            },
            schema: self.schema.clone(),
            temperature: differs(p.temperature(), default.temperature()),
            top_k: (p.top_k() != default.top_k()).then_some(p.top_k()),
            top_p: differs(p.top_p(), default.top_p()),
            min_p: differs(p.min_p(), default.min_p()),
            repeat_penalty: differs(p.repeat_penalty(), default.repeat_penalty()),
            repeat_last_n: (p.repeat_last_n() != default.repeat_last_n())
                .then_some(p.repeat_last_n()),
            seed: Some(p.seed()),
            max_tokens: self.max_tokens,
        };
        // Plain data: serializing it cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses and validates a task text (untrusted).
    ///
    /// # Errors
    /// A message for the buyer saying what is wrong: not JSON of this shape, too
    /// long, an empty prompt, a sampling value out of range.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_TASK_BYTES {
            return Err(format!(
                "the task is {} bytes; at most {MAX_TASK_BYTES} are accepted",
                text.len()
            ));
        }
        let wire: TaskWire = serde_json::from_str(text).map_err(|e| {
            format!(
                "the task must be an inference task as JSON, e.g. {{\"prompt\":\"Name a colour.\",\"seed\":7,\"maxTokens\":16}}: {e}"
            )
        })?;
        let prompt = match wire.prompt {
            PromptWire::User(s) => Prompt::user(s),
            PromptWire::Chat(messages) => {
                if messages.is_empty() {
                    return Err("the prompt has no messages".into());
                }
                if messages.len() > MAX_MESSAGES {
                    return Err(format!(
                        "the prompt has {} messages; at most {MAX_MESSAGES} are accepted",
                        messages.len()
                    ));
                }
                Prompt::Chat(messages)
            }
            PromptWire::Raw(raw) => Prompt::Text(raw.text),
        };
        let bytes = match &prompt {
            Prompt::Chat(m) => m.iter().map(|m| m.content().len()).sum(),
            Prompt::Text(t) => t.len(),
        };
        if bytes == 0 {
            return Err("the prompt is empty".into());
        }
        if bytes > MAX_PROMPT_BYTES {
            return Err(format!(
                "the prompt is {bytes} bytes; at most {MAX_PROMPT_BYTES} are accepted"
            ));
        }
        if let Some(schema) = &wire.schema {
            let len = serde_json::to_string(schema).map_or(usize::MAX, |s| s.len());
            if len > MAX_SCHEMA_BYTES {
                return Err(format!(
                    "the schema is {len} bytes; at most {MAX_SCHEMA_BYTES} are accepted"
                ));
            }
            if !schema.is_object() {
                return Err("the schema must be a JSON Schema object".into());
            }
        }
        let d = SamplingParams::default();
        let unit = |name: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{name} must be between 0 and 1, not {v}"))
            }
        };
        let temperature = wire.temperature.unwrap_or(d.temperature());
        if !(0.0..=5.0).contains(&temperature) {
            return Err(format!(
                "temperature must be between 0 and 5, not {temperature}"
            ));
        }
        let top_k = wire.top_k.unwrap_or(d.top_k());
        if top_k > 100_000 {
            return Err(format!("topK must be at most 100000, not {top_k}"));
        }
        let top_p = unit("topP", wire.top_p.unwrap_or(d.top_p()))?;
        let min_p = unit("minP", wire.min_p.unwrap_or(d.min_p()))?;
        let repeat_penalty = wire.repeat_penalty.unwrap_or(d.repeat_penalty());
        if !(0.5..=10.0).contains(&repeat_penalty) {
            return Err(format!(
                "repeatPenalty must be between 0.5 and 10, not {repeat_penalty}"
            ));
        }
        let repeat_last_n = wire.repeat_last_n.unwrap_or(d.repeat_last_n());
        if repeat_last_n > 8_192 {
            return Err(format!(
                "repeatLastN must be at most 8192, not {repeat_last_n}"
            ));
        }
        let seed = wire.seed.unwrap_or(d.seed());
        if seed == u32::MAX {
            return Err("seed 4294967295 is reserved (llama.cpp's random seed)".into());
        }
        if wire.max_tokens == Some(0) {
            return Err("maxTokens must be at least 1".into());
        }
        let params = d
            .with_temperature(temperature)
            .with_top_k(top_k)
            .with_top_p(top_p)
            .with_min_p(min_p)
            .with_repeat_penalty(repeat_penalty, repeat_last_n)
            .with_seed(seed)
            .with_max_tokens(wire.max_tokens.unwrap_or(d.max_tokens()));
        Ok(Self {
            prompt,
            params,
            max_tokens: wire.max_tokens,
            schema: wire.schema,
        })
    }

    /// What a seller runs for this task, and what a buyer expects the attested
    /// record to hold: the prompt (an extraction's chat prompt with the schema's shape
    /// added, see [`InferenceRequest::prompt`]), the sampling parameters with
    /// `max_tokens` resolved, and an extraction's grammar, made from the schema with
    /// `limits` (sellers and buyers use [`GrammarLimits::default`]).
    ///
    /// # Errors
    /// A message for the buyer when the schema has no grammar.
    pub fn request(&self, limits: GrammarLimits) -> Result<InferenceRequest, String> {
        match &self.schema {
            None => Ok(InferenceRequest {
                prompt: self.prompt.clone(),
                params: self
                    .params
                    .with_max_tokens(self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
                grammar: None,
            }),
            Some(schema) => {
                let grammar = JsonGrammar::from_schema(schema, limits)
                    .map_err(|e| format!("the schema has no grammar: {e}"))?;
                let longest = grammar.max_bytes().saturating_add(1);
                let max_tokens = self
                    .max_tokens
                    .unwrap_or_else(|| u32::try_from(longest).unwrap_or(u32::MAX));
                Ok(InferenceRequest {
                    prompt: with_shape_hint(self.prompt.clone(), grammar.shape()),
                    params: self.params.with_max_tokens(max_tokens),
                    grammar: Some(grammar),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tasks_round_trip_through_their_text() {
        let tasks = [
            InferenceTask::complete("Name a colour."),
            InferenceTask::complete(Prompt::system_user("Be brief.", "Hi")).with_params(
                SamplingParams::default()
                    .with_seed(9)
                    .with_temperature(0.3)
                    .with_max_tokens(12),
            ),
            InferenceTask::complete(Prompt::Text("raw".into()))
                .with_params(SamplingParams::greedy().with_top_p(0.5)),
            InferenceTask::extract("Oslo weather", json!({"type": "object"})),
        ];
        for task in tasks {
            let text = task.to_task();
            assert_eq!(InferenceTask::parse(&text).unwrap(), task, "{text}");
        }
    }

    #[test]
    fn untrusted_tasks_get_clear_refusals() {
        let refused = [
            ("not json", "must be an inference task as JSON"),
            (r#"{"prompt":""}"#, "the prompt is empty"),
            (r#"{"prompt":[]}"#, "no messages"),
            (r#"{"prompt":"hi","bogus":1}"#, "unknown field"),
            (
                r#"{"prompt":"hi","topP":1.5}"#,
                "topP must be between 0 and 1",
            ),
            (r#"{"prompt":"hi","temperature":-1}"#, "temperature must be"),
            (r#"{"prompt":"hi","seed":4294967295}"#, "reserved"),
            (r#"{"prompt":"hi","maxTokens":0}"#, "at least 1"),
            (r#"{"prompt":"hi","schema":[1]}"#, "JSON Schema object"),
            (
                r#"{"prompt":[{"role":"robot","content":"x"}]}"#,
                "must be an inference task",
            ),
        ];
        for (text, why) in refused {
            let err = InferenceTask::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let long = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(MAX_PROMPT_BYTES + 1));
        assert!(InferenceTask::parse(&long)
            .unwrap_err()
            .contains("at most 16384"));
        let huge = "x".repeat(MAX_TASK_BYTES + 1);
        assert!(InferenceTask::parse(&huge).unwrap_err().contains("65536"));
    }

    #[test]
    fn a_completion_without_max_tokens_gets_the_default() {
        let task = InferenceTask::parse(r#"{"prompt":"hi","seed":3}"#).unwrap();
        let req = task.request(GrammarLimits::default()).unwrap();
        assert_eq!(req.params.max_tokens(), DEFAULT_MAX_TOKENS);
        assert_eq!(req.params.seed(), 3);
        assert_eq!(req.prompt, Prompt::user("hi"));
        assert!(req.grammar.is_none());
    }
}
