//! The weather crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in answering a forecast query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A weather forecast query is invalid (days out of range, bad coordinates, ...).
    #[error("invalid forecast query: {reason}")]
    InvalidQuery {
        /// What is wrong with it.
        reason: String,
    },

    /// No city of that name is known (to the climatology dataset or to the geocoder).
    #[error("unknown city {query:?}{}", near_matches_hint(suggestions))]
    UnknownCity {
        /// The name as asked for (with the country filter, if any, e.g. `"Paris, FR"`).
        query: String,
        /// Known city names close to the query, best first; may be empty.
        suggestions: Vec<String>,
    },

    /// The city name matches more than one city; the query must name the country.
    #[error("city {query:?} is ambiguous: {} (give the country code)", candidates.join(", "))]
    AmbiguousCity {
        /// The name as asked for.
        query: String,
        /// The matching cities, as `"Name (CC)"`.
        candidates: Vec<String>,
    },

    /// A weather service answered with an HTTP error status.
    #[error("HTTP {status} from {url}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    HttpStatus {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The service's own explanation (Open-Meteo's `reason`) or the start of the body.
        reason: Option<String>,
    },

    /// A weather service answered 200 but the body is not what its API documents.
    #[error("malformed response from {url}: {reason}")]
    MalformedResponse {
        /// The request URL.
        url: String,
        /// What is wrong, naming the missing or invalid field (e.g. `daily.temperature_2m_max`).
        reason: String,
    },

    /// A weather service did not answer within the configured timeout, on every attempt.
    #[error("timed out after {attempts} attempt(s) of {timeout_ms} ms each: {url}")]
    Timeout {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The per-attempt timeout, in milliseconds.
        timeout_ms: u64,
    },

    /// A weather service could not be reached (connection refused, DNS, TLS, ...) on every attempt.
    #[error("request to {url} failed after {attempts} attempt(s): {reason}")]
    Network {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },

    /// The built-in climatology dataset could not be read (a build defect, not bad input).
    #[error("climatology dataset, line {line}: {reason}")]
    Dataset {
        /// 1-based line in `skills/weather/data/climate-normals.csv`.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn near_matches_hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}
