//! Schema bounding and grammar conversion of the kinds of types agents exchange, and
//! the differential test of the grammars over the project's schemas
//! ([`crate::schemas`]).

use llm::{BoundedSchema, Error};
use schemars::JsonSchema;

use crate::schemas::{self, Offer, LIMITS};

#[test]
fn unsupported_parts_are_named() {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Bad {
        ok: u8,
        nested: Inner,
    }
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        anything: serde_json::Value,
    }
    let err = BoundedSchema::for_type::<Bad>(LIMITS).unwrap_err();
    match &err {
        Error::UnsupportedSchema { location, reason } => {
            assert_eq!(location, "#/$defs/Inner/properties/anything");
            assert!(
                reason.contains("unbounded") || reason.contains("unconstrained"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
}

/// weather's whole `DailyForecast` has a `NaiveDate` (`format: date`): refused, as
/// the hand-written converter refused it, since llama.cpp's date grammar admits
/// dates that chrono does not.
#[test]
fn dates_are_refused_with_their_location() {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct DailyForecast {
        date: chrono_like::NaiveDate,
        temperature_min_c: Option<f64>,
    }
    mod chrono_like {
        /// Stands in for chrono's `NaiveDate`, whose schema is a `date` string.
        #[allow(dead_code)]
        pub(super) struct NaiveDate;
        impl schemars::JsonSchema for NaiveDate {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "NaiveDate".into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "format": "date"})
            }
        }
    }
    let err = BoundedSchema::for_type::<DailyForecast>(LIMITS).unwrap_err();
    assert!(
        err.to_string().contains("#/$defs/NaiveDate/format"),
        "{err}"
    );
}

#[test]
fn every_project_schema_is_bounded_and_its_samples_fit_max_bytes() {
    for case in schemas::cases() {
        let bounded = BoundedSchema::new(&case.schema, LIMITS)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for text in &case.valid {
            assert!(
                (case.parses)(text),
                "{}: sample {text} does not parse",
                case.name
            );
            // The compact form of each sample is within the bound.
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let compact = serde_json::to_string(&value).unwrap();
            assert!(
                compact.len() as u64 <= bounded.max_bytes(),
                "{}: {compact} is longer than {}",
                case.name,
                bounded.max_bytes()
            );
        }
    }
    let offer = BoundedSchema::for_type::<Offer>(LIMITS).unwrap();
    assert!(offer.max_bytes() < 100_000, "{}", offer.max_bytes());
}

#[cfg(feature = "engine")]
mod differential {
    //! The grammars of llama.cpp's converter (version 2) against the hand-written
    //! converter's (version 1, kept as fixtures in `tests/fixtures/grammar-v1`, written
    //! by the old converter at commit 1090da0 with [`LIMITS`]): llama.cpp's own grammar
    //! sampler decides whether a grammar accepts a text, token by token on the real
    //! model's vocabulary, then end of generation.

    use std::path::Path;
    use std::sync::OnceLock;

    use llm::llama_cpp_2::model::params::LlamaModelParams;
    use llm::llama_cpp_2::model::LlamaModel;
    use llm::llama_cpp_2::sampling::LlamaSampler;
    use llm::llama_cpp_2::token::data::LlamaTokenData;
    use llm::llama_cpp_2::token::data_array::LlamaTokenDataArray;
    use llm::llama_cpp_2::token::LlamaToken;
    use llm::{backend, Error, Isolation, JsonGrammar, SamplingParams};

    use super::schemas::{self, LIMITS};

    fn model() -> &'static LlamaModel {
        static MODEL: OnceLock<LlamaModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            LlamaModel::load_from_file(
                backend().unwrap(),
                llm::test_utils::model_path(),
                &LlamaModelParams::default(),
            )
            .unwrap()
        })
    }

    fn allows(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
        let mut single =
            LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
        single.apply_sampler(grammar);
        single.data.first().is_some_and(|d| d.logit().is_finite())
    }

    /// Whether `gbnf` accepts exactly `text`.
    fn accepts(gbnf: &str, text: &str) -> bool {
        let model = model();
        let mut grammar = LlamaSampler::grammar(model, gbnf, "root")
            .unwrap_or_else(|e| panic!("llama.cpp cannot parse the grammar ({e}):\n{gbnf}"));
        let vocab = model.vocab();
        for token in vocab.tokenize(text.as_bytes(), false, false) {
            if !allows(&mut grammar, token) || grammar.try_accept(token).is_err() {
                return false;
            }
        }
        allows(&mut grammar, vocab.eos())
    }

    fn old_grammar(name: &str) -> Option<(String, u64)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/grammar-v1")
            .join(format!("{name}.gbnf"));
        let text = std::fs::read_to_string(&path).unwrap();
        let max = text
            .lines()
            .next()?
            .strip_prefix("# max_bytes: ")?
            .parse()
            .ok()?;
        Some((text, max))
    }

    /// Where the two converters disagree, by design: `(case, text)` pairs the new
    /// grammar accepts and the old one refused. Everything else must agree.
    const ACCEPTED_ONLY_BY_NEW: &[(&str, &str)] = &[
        // llama.cpp's `char` admits `\uXXXX` escapes (lone surrogates excluded by our
        // override); the old converter admitted no `\u` escapes at all.
        (
            "trip_draft",
            r#"{"days": 2, "destination": "\u00e9t\u00e9 \n", "interests": ["x"], "month": 7}"#,
        ),
    ];

    #[test]
    fn new_grammars_accept_the_valid_samples_and_refuse_the_invalid_ones() {
        let mut report = Vec::new();
        for case in schemas::cases() {
            let new = JsonGrammar::from_schema(&case.schema, LIMITS)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let old = old_grammar(case.name);
            for text in &case.valid {
                assert!(
                    accepts(new.as_str(), text),
                    "{}: the new grammar refuses the valid {text}\n{}",
                    case.name,
                    new.as_str()
                );
                assert!(
                    text.len() as u64 <= new.max_bytes(),
                    "{}: {text}",
                    case.name
                );
                if let Some((old, _)) = &old {
                    let by_old = accepts(old, text);
                    let expected = !ACCEPTED_ONLY_BY_NEW.contains(&(case.name, text));
                    assert_eq!(
                        by_old,
                        expected,
                        "{}: the old grammar {} {text}",
                        case.name,
                        if by_old { "accepts" } else { "refuses" }
                    );
                    if !by_old {
                        report.push(format!("{}: only v2 accepts {text}", case.name));
                    }
                }
            }
            for text in &case.invalid {
                assert!(
                    !accepts(new.as_str(), text),
                    "{}: the new grammar accepts the invalid {text}\n{}",
                    case.name,
                    new.as_str()
                );
                if let Some((old, _)) = &old {
                    assert!(
                        !accepts(old, text),
                        "{}: the old grammar accepts the invalid {text}",
                        case.name
                    );
                }
            }
            let old_max = old.map_or(0, |(_, m)| m);
            report.push(format!(
                "{}: max_bytes v1 {old_max}, v2 {}; grammar v2 {} bytes",
                case.name,
                new.max_bytes(),
                new.as_str().len()
            ));
        }
        eprintln!("{}", report.join("\n"));
    }

    /// Generation under each new grammar on the real model (through the engine's
    /// `generate_with_grammar`, as `generate_json` does): every output that ends
    /// parses into the type and is within `max_bytes`. An output cut by the test
    /// engine's small context (512 tokens) is `Truncated`, never an unparsable text.
    #[test]
    fn outputs_under_the_new_grammars_parse_and_fit() {
        let engine = llm::test_utils::shared_engine();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut report = Vec::new();
        for case in schemas::cases() {
            let grammar = JsonGrammar::from_schema(&case.schema, LIMITS).unwrap();
            let prompt = format!("One example, as JSON: {}", grammar.shape());
            let out = rt.block_on(engine.generate_with_grammar::<serde_json::Value>(
                prompt.into(),
                SamplingParams::default().with_seed(1),
                &grammar,
                Isolation::Shared,
            ));
            match out {
                Ok(json) => {
                    let text = json.completion.text();
                    assert!(
                        (case.parses)(text),
                        "{}: {text:?} does not parse",
                        case.name
                    );
                    assert!(
                        text.len() as u64 <= grammar.max_bytes(),
                        "{}: {text}",
                        case.name
                    );
                    report.push(format!("{}: {text}", case.name));
                }
                Err(Error::Truncated { tokens }) => {
                    report.push(format!("{}: cut after {tokens} tokens", case.name));
                }
                Err(e) => panic!("{}: {e}", case.name),
            }
        }
        eprintln!("{}", report.join("\n"));
    }
}
