//! Prompts and sampling parameters: what a request asks for, and their hashes.

use serde::{Deserialize, Serialize};
use wallets::eip712::Encoder;
use wallets::{keccak256, Eip712, B256};

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's turn.
    User,
    /// The model's earlier turns.
    Assistant,
}

impl Role {
    /// The role name chat templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    role: Role,
    content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// Who says it.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What is said.
    pub fn content(&self) -> &str {
        &self.content
    }
}

/// What the model is asked: a chat (rendered with the model's chat template) or raw
/// text (tokenised as is, for completion models and exact control).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    /// Chat messages; the model's chat template turns them into text and opens the
    /// assistant's turn.
    Chat(Vec<ChatMessage>),
    /// Text fed to the tokenizer as is (special tokens in it are parsed).
    Text(String),
}

impl Prompt {
    /// A chat of one user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::Chat(vec![ChatMessage::user(content)])
    }

    /// A chat of a system message and a user message.
    pub fn system_user(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self::Chat(vec![ChatMessage::system(system), ChatMessage::user(user)])
    }
}

impl From<&str> for Prompt {
    /// A chat of one user message.
    fn from(s: &str) -> Self {
        Self::user(s)
    }
}

impl From<String> for Prompt {
    /// A chat of one user message.
    fn from(s: String) -> Self {
        Self::user(s)
    }
}

impl From<Vec<ChatMessage>> for Prompt {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Self::Chat(messages)
    }
}

/// How tokens are chosen. With the same model, prompt, parameters (seed included) and
/// grammar, generation gives the same tokens.
///
/// The sampler chain is, in llama.cpp's usual order: grammar (if any), repetition
/// penalty, top-k, top-p, min-p, temperature, then a draw seeded with [`Self::seed`];
/// a temperature of 0 means greedy decoding (the seed then plays no part).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingParams {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: u32,
    seed: u32,
    max_tokens: u32,
}

impl Default for SamplingParams {
    /// Temperature 0.7, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty,
    /// seed 0, at most 256 tokens.
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            max_tokens: 256,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (always the most likely token), at most 256 tokens.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Sets the temperature (0 or less: greedy).
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets top-k (0: off).
    #[must_use]
    pub fn with_top_k(mut self, top_k: u32) -> Self {
        self.top_k = top_k;
        self
    }

    /// Sets top-p (1: off).
    #[must_use]
    pub fn with_top_p(mut self, top_p: f32) -> Self {
        self.top_p = top_p;
        self
    }

    /// Sets min-p (0: off).
    #[must_use]
    pub fn with_min_p(mut self, min_p: f32) -> Self {
        self.min_p = min_p;
        self
    }

    /// Sets the repetition penalty (1: off) and how many recent tokens it looks at.
    #[must_use]
    pub fn with_repeat_penalty(mut self, penalty: f32, last_n: u32) -> Self {
        self.repeat_penalty = penalty;
        self.repeat_last_n = last_n;
        self
    }

    /// Sets the seed of the random draw.
    #[must_use]
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the most tokens to generate.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The temperature.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }
    /// Top-k (0: off).
    pub fn top_k(&self) -> u32 {
        self.top_k
    }
    /// Top-p (1: off).
    pub fn top_p(&self) -> f32 {
        self.top_p
    }
    /// Min-p (0: off).
    pub fn min_p(&self) -> f32 {
        self.min_p
    }
    /// Repetition penalty (1: off).
    pub fn repeat_penalty(&self) -> f32 {
        self.repeat_penalty
    }
    /// Tokens the repetition penalty looks back over.
    pub fn repeat_last_n(&self) -> u32 {
        self.repeat_last_n
    }
    /// The seed.
    pub fn seed(&self) -> u32 {
        self.seed
    }
    /// The most tokens to generate.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
    /// Whether decoding is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The hash that attestations carry, at the current [`SpecVersion`]: the EIP-712
    /// struct hash of [`SamplingSpec`] (the version, these parameters, floats as their
    /// IEEE-754 bits, and the Keccak-256 of the grammar, zero when there is none).
    pub fn hash_with_grammar(&self, grammar: Option<&str>) -> B256 {
        self.hash_with_grammar_at(SpecVersion::CURRENT, grammar)
    }

    /// [`SamplingParams::hash_with_grammar`] as `version` computes it (to check an
    /// attestation made under an earlier version).
    pub fn hash_with_grammar_at(&self, version: SpecVersion, grammar: Option<&str>) -> B256 {
        SamplingSpec {
            version,
            params: *self,
            grammar_hash: grammar.map_or(B256::ZERO, |g| keccak256(g.as_bytes())),
        }
        .struct_hash()
    }
}

/// The version of the sampling spec an attestation hashes: which rules made its
/// grammar, and how the spec is hashed. An [`crate::InferenceRecord`] carries it
/// (`specVersion`; records without one are version 1), so that a verifier recomputes
/// the sampling hash the way the seller did and re-runs under the recorded grammar
/// text. Serialized as its number.
///
/// | version | grammars from | hashed struct |
/// |---|---|---|
/// | 1 | Agora's hand-written JSON Schema → GBNF converter (before llama.cpp's) | `SamplingSpec(uint32 temperatureBits,…,bytes32 grammarHash)`, no version field |
/// | 2 | llama.cpp's `json_schema_to_grammar` on a bounded schema, with Agora's overrides ([`crate::grammar`]) | `SamplingSpec(uint32 specVersion,uint32 temperatureBits,…,bytes32 grammarHash)` |
///
/// The same request hashes differently under the two versions, with or without a
/// grammar, so an attestation never passes for one of the other version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum SpecVersion {
    /// Version 1: the hand-written grammar converter.
    HandWrittenGrammar = 1,
    /// Version 2: llama.cpp's converter on a bounded schema.
    LlamaCppGrammar = 2,
}

impl SpecVersion {
    /// The version this build writes.
    pub const CURRENT: Self = Self::LlamaCppGrammar;

    /// The version's number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// Version 1, the version of records written before versions existed.
    pub(crate) fn first() -> Self {
        Self::HandWrittenGrammar
    }
}

impl From<SpecVersion> for u32 {
    fn from(v: SpecVersion) -> Self {
        v.number()
    }
}

impl TryFrom<u32> for SpecVersion {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, String> {
        match n {
            1 => Ok(Self::HandWrittenGrammar),
            2 => Ok(Self::LlamaCppGrammar),
            other => Err(format!(
                "unknown sampling spec version {other} (this build knows 1 and 2)"
            )),
        }
    }
}

/// Sampling parameters plus the grammar they ran under, as hashed into attestations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingSpec {
    /// The spec version (see [`SpecVersion`]).
    pub version: SpecVersion,
    /// The parameters.
    pub params: SamplingParams,
    /// Keccak-256 of the GBNF grammar text, or zero.
    pub grammar_hash: B256,
}

impl SamplingSpec {
    /// The EIP-712 type of version 1, which had no version field.
    pub const TYPE_V1: &'static str = "SamplingSpec(uint32 temperatureBits,uint32 topK,uint32 topPBits,uint32 minPBits,uint32 repeatPenaltyBits,uint32 repeatLastN,uint32 seed,uint32 maxTokens,bytes32 grammarHash)";
}

impl Eip712 for SamplingSpec {
    const NAME: &'static str = "SamplingSpec";
    /// The type from version 2 on; version 1 hashes as [`SamplingSpec::TYPE_V1`].
    const TYPE: &'static str = "SamplingSpec(uint32 specVersion,uint32 temperatureBits,uint32 topK,uint32 topPBits,uint32 minPBits,uint32 repeatPenaltyBits,uint32 repeatLastN,uint32 seed,uint32 maxTokens,bytes32 grammarHash)";

    fn struct_hash(&self) -> B256 {
        let p = &self.params;
        let encoder = match self.version {
            SpecVersion::HandWrittenGrammar => Encoder::new(keccak256(Self::TYPE_V1.as_bytes())),
            SpecVersion::LlamaCppGrammar => {
                Encoder::new(Self::type_hash()).uint(self.version.number())
            }
        };
        encoder
            .uint(p.temperature.to_bits())
            .uint(p.top_k)
            .uint(p.top_p.to_bits())
            .uint(p.min_p.to_bits())
            .uint(p.repeat_penalty.to_bits())
            .uint(p.repeat_last_n)
            .uint(p.seed)
            .uint(p.max_tokens)
            .b256(self.grammar_hash)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_hash_covers_every_field_and_the_grammar() {
        let base = SamplingParams::default();
        let h = base.hash_with_grammar(None);
        let variants = [
            base.with_seed(1),
            base.with_temperature(0.71),
            base.with_top_k(41),
            base.with_top_p(0.9),
            base.with_min_p(0.0),
            base.with_repeat_penalty(1.1, 64),
            base.with_repeat_penalty(1.0, 65),
            base.with_max_tokens(255),
        ];
        for v in variants {
            assert_ne!(v.hash_with_grammar(None), h, "{v:?}");
        }
        assert_ne!(base.hash_with_grammar(Some("root ::= \"a\"")), h);
        assert_eq!(SamplingParams::default().hash_with_grammar(None), h);
    }

    #[test]
    fn versions_hash_apart_and_version_1_is_the_old_hash() {
        let p = SamplingParams::default().with_seed(9);
        let g = Some("root ::= \"a\"");
        for grammar in [None, g] {
            assert_ne!(
                p.hash_with_grammar_at(SpecVersion::HandWrittenGrammar, grammar),
                p.hash_with_grammar_at(SpecVersion::LlamaCppGrammar, grammar)
            );
        }
        assert_eq!(
            p.hash_with_grammar(g),
            p.hash_with_grammar_at(SpecVersion::CURRENT, g)
        );
        // Version 1 is the hash of the struct before versions existed.
        let old = Encoder::new(keccak256(SamplingSpec::TYPE_V1.as_bytes()))
            .uint(p.temperature.to_bits())
            .uint(p.top_k)
            .uint(p.top_p.to_bits())
            .uint(p.min_p.to_bits())
            .uint(p.repeat_penalty.to_bits())
            .uint(p.repeat_last_n)
            .uint(p.seed)
            .uint(p.max_tokens)
            .b256(keccak256(b"root ::= \"a\""))
            .finish();
        assert_eq!(
            p.hash_with_grammar_at(SpecVersion::HandWrittenGrammar, g),
            old
        );
        assert_eq!(serde_json::to_string(&SpecVersion::CURRENT).unwrap(), "2");
        assert!(serde_json::from_str::<SpecVersion>("3").is_err());
    }

    #[test]
    fn params_round_trip_through_json() {
        let p = SamplingParams::greedy().with_seed(7).with_max_tokens(12);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"maxTokens\":12"), "{json}");
        assert_eq!(serde_json::from_str::<SamplingParams>(&json).unwrap(), p);
    }
}
