//! The project's schemas that are generated under grammars, with sample JSON texts
//! that must be accepted (valid values of the type, within the grammar limits of
//! [`LIMITS`]) and texts that must be refused. The grammar differential test
//! (`grammar.rs`) runs every converter over them.
//!
//! Types of other crates are copied here (the `llm` crate cannot depend on the crates
//! above it); each copy names its original, whose schema it must keep matching.

use llm::GrammarLimits;
use schemars::JsonSchema;
use serde::Deserialize;

/// The limits of the test engine (`llm::test_utils::engine_config`).
pub(crate) const LIMITS: GrammarLimits = GrammarLimits {
    max_string_chars: 40,
    max_array_items: 3,
    max_fraction_digits: 2,
};

/// travel's `TripDraft` (skills/travel/src/lib.rs), the one type the project
/// generates with `LlmEngine::generate_json` today.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct TripDraft {
    /// The city to visit.
    pub(crate) destination: String,
    /// How many days.
    pub(crate) days: u8,
    /// Month of travel, 1 to 12.
    pub(crate) month: u8,
    /// What the traveller likes.
    pub(crate) interests: Vec<String>,
}

/// weather's `Location` (skills/weather/src/types.rs).
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Location {
    pub(crate) name: String,
    pub(crate) country: Option<String>,
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
}

/// weather's `ForecastSource` (skills/weather/src/types.rs): an internally tagged enum.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ForecastSource {
    OpenMeteo {
        base_url: String,
        license: String,
        attribution: String,
    },
    Climatology {
        dataset: String,
        license: String,
        period: String,
        attribution: String,
    },
}

/// weather's `AnnualNormals` (skills/weather/src/types.rs).
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct AnnualNormals {
    pub(crate) mean_temperature_c: f64,
    pub(crate) precipitation_mm: u32,
    pub(crate) sunshine_hours: u32,
}

/// weather's `DailyForecast` without its `date` (a `NaiveDate`, whose `format: date`
/// both converters refuse; see `DailyForecast`).
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct DayFigures {
    pub(crate) temperature_min_c: Option<f64>,
    pub(crate) temperature_max_c: Option<f64>,
    pub(crate) temperature_mean_c: Option<f64>,
    pub(crate) precipitation_mm: Option<f64>,
    pub(crate) sunshine_hours: Option<f64>,
}

/// weather's `Forecast` without dates: location, days, source, normals, note.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct ForecastBody {
    pub(crate) location: Location,
    pub(crate) days: Vec<DayFigures>,
    pub(crate) source: ForecastSource,
    pub(crate) annual: Option<AnnualNormals>,
    pub(crate) note: String,
}

/// weather's `ForecastDays`: a hand-written schema, an integer 1 to 16.
pub(crate) fn forecast_days_schema() -> serde_json::Value {
    serde_json::json!({
        "description": "Number of days, 1 to 16.",
        "type": "integer",
        "minimum": 1,
        "maximum": 16,
    })
}

/// The test types of the grammar tests.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Payment {
    Authorization { amount: u64 },
    Escrow { amount: u64, deadline_hours: u16 },
    Channel,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) enum Shape {
    Point,
    Circle(f32),
    Rect { w: u16, h: u16 },
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(crate) struct Offer {
    /// Doc comments become descriptions, which the converters ignore.
    pub(crate) service: String,
    pub(crate) payment: Payment,
    pub(crate) shapes: Vec<Shape>,
    pub(crate) pair: (bool, i16),
    #[serde(default)]
    pub(crate) tags: Vec<char>,
    pub(crate) maybe: Option<Box<Offer2>>,
    pub(crate) unit: (),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Offer2 {
    pub(crate) x: Option<i64>,
}

/// The engine tests' structured-output types (skills/llm/tests/it/engine.rs).
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) enum Condition {
    Sunny,
    Cloudy,
    Rainy,
    Snowy,
    Windy,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Forecast {
    #[schemars(length(max = 24))]
    pub(crate) city: String,
    pub(crate) celsius: i8,
    pub(crate) condition: Condition,
    #[schemars(range(max = 100))]
    pub(crate) rain_percent: u8,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Currency {
    Usdc,
    Eur,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Quote {
    #[schemars(length(max = 32))]
    pub(crate) service: String,
    pub(crate) price_cents: u32,
    pub(crate) currency: Currency,
    pub(crate) valid_hours: Option<u16>,
    #[schemars(length(max = 2))]
    pub(crate) notes: Vec<String>,
}

/// One schema under test: its name, its JSON Schema, texts of valid values and
/// texts that are not values of it (or exceed the limits), and a check that a text
/// deserializes into the Rust type.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) schema: serde_json::Value,
    pub(crate) valid: Vec<&'static str>,
    pub(crate) invalid: Vec<&'static str>,
    pub(crate) parses: fn(&str) -> bool,
}

fn parses<T: serde::de::DeserializeOwned>(text: &str) -> bool {
    serde_json::from_str::<T>(text).is_ok()
}

fn schema<T: JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(T).as_value().clone()
}

/// Every schema under test.
pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "trip_draft",
            schema: schema::<TripDraft>(),
            valid: vec![
                r#"{"days": 3, "destination": "Lisbon", "interests": ["food", "museums"], "month": 5}"#,
                r#"{"days":1,"destination":"","interests":[],"month":12}"#,
                r#"{"days": 255, "destination": "Zürich \"old town\"", "interests": ["a", "b", "c"], "month": 0}"#,
                r#"{"days": 2, "destination": "\u00e9t\u00e9 \n", "interests": ["x"], "month": 7}"#,
            ],
            invalid: vec![
                // key order differs from the grammar's (alphabetical, required first)
                r#"{"destination": "Lisbon", "days": 3, "interests": [], "month": 5}"#,
                // u8 out of range
                r#"{"days": 256, "destination": "Lisbon", "interests": [], "month": 5}"#,
                r#"{"days": -1, "destination": "Lisbon", "interests": [], "month": 5}"#,
                // four interests: over the array limit of 3
                r#"{"days": 3, "destination": "L", "interests": ["a", "b", "c", "d"], "month": 5}"#,
                // 41 characters: over the string limit of 40
                r#"{"days": 3, "destination": "12345678901234567890123456789012345678901", "interests": [], "month": 5}"#,
                // a missing key, an unknown key
                r#"{"days": 3, "destination": "Lisbon", "month": 5}"#,
                r#"{"days": 3, "destination": "Lisbon", "interests": [], "month": 5, "price": 1}"#,
                // a lone surrogate escape, which serde_json refuses
                r#"{"days": 3, "destination": "\ud800", "interests": [], "month": 5}"#,
                // newlines and indentation
                "{\n  \"days\": 3,\n  \"destination\": \"L\",\n  \"interests\": [],\n  \"month\": 5\n}",
                r#"{"days": 03, "destination": "L", "interests": [], "month": 5}"#,
            ],
            parses: parses::<TripDraft>,
        },
        Case {
            name: "forecast_days",
            schema: forecast_days_schema(),
            valid: vec!["1", "9", "10", "16"],
            invalid: vec!["0", "17", "-1", "1.5", "\"3\"", "016"],
            parses: |t| parses::<u8>(t) && (1..=16).contains(&t.parse::<u8>().unwrap_or(0)),
        },
        Case {
            name: "location",
            schema: schema::<Location>(),
            valid: vec![
                r#"{"latitude": 38.72, "longitude": -9.14, "name": "Lisbon", "country": "PT"}"#,
                r#"{"latitude": 0, "longitude": -0.5, "name": "Null Island", "country": null}"#,
                r#"{"latitude": 1, "longitude": 2, "name": "x"}"#,
            ],
            invalid: vec![
                // an exponent (1e999 does not fit an f64)
                r#"{"latitude": 1e999, "longitude": 2, "name": "x"}"#,
                // more fraction digits than the limit of 2
                r#"{"latitude": 38.123, "longitude": 2, "name": "x"}"#,
                r#"{"latitude": "38", "longitude": 2, "name": "x"}"#,
                r#"{"latitude": NaN, "longitude": 2, "name": "x"}"#,
            ],
            parses: parses::<Location>,
        },
        Case {
            name: "forecast_source",
            schema: schema::<ForecastSource>(),
            valid: vec![
                r#"{"attribution": "Open-Meteo", "base_url": "https://api.open-meteo.com", "kind": "open_meteo", "license": "CC-BY-4.0"}"#,
                r#"{"attribution": "a", "dataset": "d", "kind": "climatology", "license": "l", "period": "1981-2010"}"#,
            ],
            invalid: vec![
                r#"{"attribution": "a", "base_url": "b", "kind": "climatology", "license": "l"}"#,
                r#"{"kind": "open_meteo"}"#,
            ],
            parses: parses::<ForecastSource>,
        },
        Case {
            name: "forecast_body",
            schema: schema::<ForecastBody>(),
            valid: vec![
                r#"{"days": [{"precipitation_mm": 0.5, "sunshine_hours": 9, "temperature_max_c": 24.25, "temperature_mean_c": null, "temperature_min_c": -3}], "location": {"latitude": 38.72, "longitude": -9.14, "name": "Lisbon", "country": "PT"}, "note": "normals", "source": {"attribution": "a", "dataset": "d", "kind": "climatology", "license": "l", "period": "p"}, "annual": {"mean_temperature_c": 17.5, "precipitation_mm": 700, "sunshine_hours": 2800}}"#,
                r#"{"days": [], "location": {"latitude": 0, "longitude": 0, "name": ""}, "note": "", "source": {"attribution": "", "base_url": "", "kind": "open_meteo", "license": ""}}"#,
            ],
            invalid: vec![
                r#"{"days": [], "location": {"latitude": 0, "longitude": 0, "name": ""}, "note": "", "source": {"attribution": "", "base_url": "", "kind": "open_meteo", "license": ""}, "annual": {"mean_temperature_c": 1, "precipitation_mm": -1, "sunshine_hours": 0}}"#,
            ],
            parses: parses::<ForecastBody>,
        },
        Case {
            name: "offer",
            schema: schema::<Offer>(),
            valid: vec![
                r#"{"pair": [true, -32768], "payment": {"kind": "channel"}, "service": "s", "shapes": ["Point", {"Circle": 1.5}, {"Rect": {"h": 2, "w": 65535}}], "unit": null, "maybe": {"x": -9}, "tags": ["a", "é"]}"#,
                r#"{"pair": [false, 0], "payment": {"amount": 5, "kind": "authorization"}, "service": "", "shapes": [], "unit": null}"#,
                r#"{"pair": [false, 7], "payment": {"amount": 0, "deadline_hours": 48, "kind": "escrow"}, "service": "x", "shapes": [], "unit": null, "maybe": null}"#,
            ],
            invalid: vec![
                r#"{"pair": [true, 32768], "payment": {"kind": "channel"}, "service": "s", "shapes": [], "unit": null}"#,
                r#"{"pair": [true], "payment": {"kind": "channel"}, "service": "s", "shapes": [], "unit": null}"#,
                r#"{"pair": [true, 1], "payment": {"kind": "escrow"}, "service": "s", "shapes": [], "unit": null}"#,
                r#"{"pair": [true, 1], "payment": {"kind": "channel"}, "service": "s", "shapes": [], "unit": null, "tags": ["ab"]}"#,
                r#"{"pair": [true, 1], "payment": {"kind": "channel"}, "service": "s", "shapes": [{"Rect": {"h": 2, "w": 65536}}], "unit": null}"#,
            ],
            parses: parses::<Offer>,
        },
        Case {
            name: "engine_forecast",
            schema: schema::<Forecast>(),
            valid: vec![
                r#"{"celsius": -128, "city": "Lisbon", "condition": "Sunny", "rain_percent": 100}"#,
                r#"{"celsius":21,"city":"","condition":"Windy","rain_percent":0}"#,
            ],
            invalid: vec![
                r#"{"celsius": 128, "city": "Lisbon", "condition": "Sunny", "rain_percent": 1}"#,
                r#"{"celsius": 1, "city": "Lisbon", "condition": "sunny", "rain_percent": 1}"#,
                r#"{"celsius": 1, "city": "Lisbon", "condition": "Sunny", "rain_percent": 101}"#,
                r#"{"celsius": 1, "city": "1234567890123456789012345", "condition": "Sunny", "rain_percent": 1}"#,
            ],
            parses: parses::<Forecast>,
        },
        Case {
            name: "quote",
            schema: schema::<Quote>(),
            valid: vec![
                r#"{"currency": "USDC", "notes": ["fast", "cheap"], "price_cents": 4294967295, "service": "weather", "valid_hours": 24}"#,
                r#"{"currency": "EUR", "notes": [], "price_cents": 0, "service": "", "valid_hours": null}"#,
                r#"{"currency": "EUR", "notes": [], "price_cents": 0, "service": ""}"#,
            ],
            invalid: vec![
                r#"{"currency": "USD", "notes": [], "price_cents": 1, "service": ""}"#,
                r#"{"currency": "EUR", "notes": ["a", "b", "c"], "price_cents": 1, "service": ""}"#,
                r#"{"currency": "EUR", "notes": [], "price_cents": 4294967296, "service": ""}"#,
            ],
            parses: parses::<Quote>,
        },
    ]
}
