//! Forecasts from an Open-Meteo server over HTTP (reqwest, rustls).

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use reqwest::header::RETRY_AFTER;
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};
use tracing::{debug, instrument};

use super::types::{DailyForecast, Location};
use super::{Forecast, ForecastQuery, ForecastSource, OpenMeteoConfig, Place, WeatherProvider};
use crate::{Error, Result};

/// The daily variables asked for, in the order of the request.
const DAILY_VARIABLES: &str =
    "temperature_2m_max,temperature_2m_min,precipitation_sum,sunshine_duration";
/// The licence of Open-Meteo's data.
const OPEN_METEO_LICENSE: &str = "CC-BY-4.0";
/// The credit Open-Meteo asks for.
const OPEN_METEO_ATTRIBUTION: &str = "Weather data by Open-Meteo.com";
/// How much of a non-JSON error body goes into an error message.
const BODY_EXCERPT_CHARS: usize = 200;

/// Daily forecasts from an Open-Meteo server (the public API by default).
///
/// A city name is first resolved with the geocoding API (`/v1/search?name=…&count=1`,
/// filtered by country when the query gives one); coordinates go straight to the
/// forecast API (`/v1/forecast` with `daily=temperature_2m_max,temperature_2m_min,
/// precipitation_sum,sunshine_duration`, `timezone=auto` and the query's
/// `start_date`/`end_date`). Units are checked against `daily_units` (°C, mm, s).
///
/// Each request has the configured timeout; timeouts, connection failures, HTTP 429
/// and 5xx are retried per the [`RetryPolicy`](super::RetryPolicy), so one call takes
/// at most `max_attempts × timeout` plus the backoffs, per request (two requests for
/// a city name).
#[derive(Debug, Clone)]
pub struct OpenMeteoProvider {
    config: OpenMeteoConfig,
    client: reqwest::Client,
}

impl OpenMeteoProvider {
    /// A provider with these settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the settings are invalid or the HTTP client cannot be
    /// built (TLS setup).
    pub fn new(config: OpenMeteoConfig) -> Result<Self> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(config.connect_timeout())
            .user_agent(concat!("agora-skills/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("weather HTTP client: {}", chain(&e))))?;
        Ok(Self { config, client })
    }

    /// The settings.
    pub fn config(&self) -> &OpenMeteoConfig {
        &self.config
    }

    /// Resolves a city name (optionally within a country) with the geocoding API.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCity`] when the geocoder finds nothing; HTTP, timeout and
    /// malformed-response errors as for [`WeatherProvider::forecast`].
    #[instrument(target = "skill::weather", skip(self))]
    pub async fn geocode(&self, name: &str, country: Option<&str>) -> Result<Location> {
        let mut params = vec![
            ("name", name.to_owned()),
            ("count", "1".to_owned()),
            ("language", "en".to_owned()),
            ("format", "json".to_owned()),
        ];
        if let Some(code) = country {
            params.push(("countryCode", code.to_owned()));
        }
        let url = self.url(self.config.geocoding_url(), "/v1/search", &params)?;
        let body = self.get_json(&url).await?;
        let malformed = |reason: String| Error::MalformedResponse {
            url: url.to_string(),
            reason,
        };
        let root = body
            .as_object()
            .ok_or_else(|| malformed("the body is not a JSON object".to_owned()))?;
        // Open-Meteo leaves `results` out when nothing matches.
        let first = match root.get("results") {
            None | Some(Value::Null) => None,
            Some(Value::Array(results)) => results.first(),
            Some(_) => return Err(malformed("`results` is not an array".to_owned())),
        };
        let Some(first) = first else {
            return Err(Error::UnknownCity {
                query: match country {
                    Some(code) => format!("{name}, {code}"),
                    None => name.to_owned(),
                },
                suggestions: Vec::new(),
            });
        };
        let first = first
            .as_object()
            .ok_or_else(|| malformed("`results[0]` is not an object".to_owned()))?;
        let field = |key: &str| {
            first
                .get(key)
                .ok_or_else(|| malformed(format!("missing field `results[0].{key}`")))
        };
        let number = |key: &str| {
            field(key)?
                .as_f64()
                .ok_or_else(|| malformed(format!("`results[0].{key}` is not a number")))
        };
        let name = field("name")?
            .as_str()
            .ok_or_else(|| malformed("`results[0].name` is not a string".to_owned()))?
            .to_owned();
        Ok(Location {
            name,
            country: first
                .get("country_code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            latitude: number("latitude")?,
            longitude: number("longitude")?,
        })
    }

    fn url(&self, base: &str, path: &str, params: &[(&str, String)]) -> Result<Url> {
        Url::parse_with_params(&format!("{base}{path}"), params)
            .map_err(|e| Error::Config(format!("weather URL {base}{path}: {e}")))
    }

    /// GET `url` and parse the body as JSON, retrying per the policy.
    async fn get_json(&self, url: &Url) -> Result<Value> {
        let policy = self.config.retry();
        let mut attempt = 0_u32;
        loop {
            attempt = attempt.saturating_add(1);
            let failure = match self.attempt(url).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            if !failure.is_retryable() || attempt >= policy.max_attempts() {
                return Err(failure.into_error(url, attempt, self.config.timeout()));
            }
            let wait = failure
                .retry_after()
                .map_or_else(|| policy.backoff(attempt), |d| d.min(policy.max_backoff()));
            debug!(
                target: "skill::weather",
                %url, attempt, ?wait, failure = ?failure,
                "retrying weather request"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One GET: status, size-capped body, JSON.
    async fn attempt(&self, url: &Url) -> std::result::Result<Value, Failure> {
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(Failure::from_reqwest)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);

        let limit = self.config.max_response_bytes();
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(Failure::Malformed(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Failure::from_reqwest)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(Failure::Malformed(format!(
                    "the body is larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }

        if !status.is_success() {
            return Err(Failure::Status {
                status,
                reason: error_reason(&body),
                retry_after,
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Malformed(format!("the body is not valid JSON: {e}")))
    }

    /// Turns the forecast API's `daily` block into one entry per day of the query.
    fn parse_forecast(
        &self,
        url: &Url,
        body: &Value,
        query: &ForecastQuery,
        location: Location,
    ) -> Result<Forecast> {
        let malformed = |reason: String| Error::MalformedResponse {
            url: url.to_string(),
            reason,
        };
        let root = body
            .as_object()
            .ok_or_else(|| malformed("the body is not a JSON object".to_owned()))?;
        let object = |key: &str| -> Result<&Map<String, Value>> {
            root.get(key)
                .ok_or_else(|| malformed(format!("missing field `{key}`")))?
                .as_object()
                .ok_or_else(|| malformed(format!("`{key}` is not an object")))
        };
        let daily = object("daily")?;
        let units = object("daily_units")?;

        let times = daily
            .get("time")
            .ok_or_else(|| malformed("missing field `daily.time`".to_owned()))?
            .as_array()
            .ok_or_else(|| malformed("`daily.time` is not an array".to_owned()))?;
        let dates = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str()
                    .and_then(|s| s.parse::<NaiveDate>().ok())
                    .ok_or_else(|| malformed(format!("`daily.time[{i}]` is not a date: {t}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let expected: Vec<NaiveDate> = query.dates().collect();
        if dates != expected {
            return Err(malformed(format!(
                "`daily.time` covers {}, expected {} to {}",
                describe_dates(&dates),
                query.start(),
                query.end()
            )));
        }

        let series = |key: &str, unit: &str, required: bool| -> Result<Option<Vec<Option<f64>>>> {
            let Some(values) = daily.get(key) else {
                return if required {
                    Err(malformed(format!("missing field `daily.{key}`")))
                } else {
                    Ok(None)
                };
            };
            match units.get(key).and_then(Value::as_str) {
                Some(u) if u == unit => {}
                Some(u) => {
                    return Err(malformed(format!(
                        "`daily_units.{key}` is {u:?}, expected {unit:?}"
                    )))
                }
                None => return Err(malformed(format!("missing field `daily_units.{key}`"))),
            }
            let values = values
                .as_array()
                .ok_or_else(|| malformed(format!("`daily.{key}` is not an array")))?;
            if values.len() != dates.len() {
                return Err(malformed(format!(
                    "`daily.{key}` has {} values for {} days",
                    values.len(),
                    dates.len()
                )));
            }
            values
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Null => Ok(None),
                    v => v.as_f64().map(Some).ok_or_else(|| {
                        malformed(format!("`daily.{key}[{i}]` is not a number: {v}"))
                    }),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some)
        };
        let max = series("temperature_2m_max", "°C", true)?.unwrap_or_default();
        let min = series("temperature_2m_min", "°C", true)?.unwrap_or_default();
        let precipitation = series("precipitation_sum", "mm", true)?.unwrap_or_default();
        let sunshine = series("sunshine_duration", "s", false)?;

        let at = |values: &[Option<f64>], i: usize| values.get(i).copied().flatten();
        let days = dates
            .iter()
            .enumerate()
            .map(|(i, &date)| DailyForecast {
                date,
                temperature_min_c: at(&min, i),
                temperature_max_c: at(&max, i),
                temperature_mean_c: None,
                precipitation_mm: at(&precipitation, i),
                sunshine_hours: sunshine
                    .as_deref()
                    .and_then(|s| at(s, i))
                    .map(|seconds| (seconds / 360.0).round() / 10.0),
            })
            .collect();

        let zone = root
            .get("timezone")
            .and_then(Value::as_str)
            .map(|tz| format!(", dates in local time ({tz})"))
            .unwrap_or_default();
        let note = format!(
            "Open-Meteo weather forecast for {}, {} to {}{zone}. Forecasts beyond a few days are uncertain.",
            location.name,
            query.start(),
            query.end(),
        );
        Ok(Forecast {
            location,
            days,
            source: ForecastSource::OpenMeteo {
                base_url: self.config.base_url().to_owned(),
                license: OPEN_METEO_LICENSE.to_owned(),
                attribution: OPEN_METEO_ATTRIBUTION.to_owned(),
            },
            annual: None,
            note,
        })
    }
}

#[async_trait]
impl WeatherProvider for OpenMeteoProvider {
    #[instrument(target = "skill::weather", skip(self), fields(place = %query.place()))]
    async fn forecast(&self, query: &ForecastQuery) -> Result<Forecast> {
        let location = match query.place() {
            Place::City { name, country } => self.geocode(name, country.as_deref()).await?,
            Place::Coordinates {
                latitude,
                longitude,
                name,
            } => Location {
                name: name.clone().unwrap_or_else(|| query.place().to_string()),
                country: None,
                latitude: *latitude,
                longitude: *longitude,
            },
        };
        let params = [
            ("latitude", location.latitude.to_string()),
            ("longitude", location.longitude.to_string()),
            ("daily", DAILY_VARIABLES.to_owned()),
            ("timezone", "auto".to_owned()),
            ("start_date", query.start().to_string()),
            ("end_date", query.end().to_string()),
        ];
        let url = self.url(self.config.base_url(), "/v1/forecast", &params)?;
        let body = self.get_json(&url).await?;
        self.parse_forecast(&url, &body, query, location)
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    Timeout,
    Network(String),
    Status {
        status: StatusCode,
        reason: Option<String>,
        retry_after: Option<Duration>,
    },
    Malformed(String),
}

impl Failure {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Network(chain(&e))
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Network(_) => true,
            Self::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::Malformed(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn into_error(self, url: &Url, attempts: u32, timeout: Duration) -> Error {
        let url = url.to_string();
        match self {
            Self::Timeout => Error::Timeout {
                url,
                attempts,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            Self::Network(reason) => Error::Network {
                url,
                attempts,
                reason,
            },
            Self::Status { status, reason, .. } => Error::HttpStatus {
                url,
                status: status.as_u16(),
                reason,
            },
            Self::Malformed(reason) => Error::MalformedResponse { url, reason },
        }
    }
}

/// Open-Meteo's `{"error": true, "reason": "..."}`, else the start of the body.
fn error_reason(body: &[u8]) -> Option<String> {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        if let Some(reason) = map.get("reason").and_then(Value::as_str) {
            return Some(reason.to_owned());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut excerpt: String = text.chars().take(BODY_EXCERPT_CHARS).collect();
    if text.chars().count() > BODY_EXCERPT_CHARS {
        excerpt.push('…');
    }
    Some(excerpt)
}

/// An error and its sources, `: `-joined (reqwest hides the cause in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn describe_dates(dates: &[NaiveDate]) -> String {
    match (dates.first(), dates.last()) {
        (Some(first), Some(last)) => format!("{} day(s), {first} to {last}", dates.len()),
        _ => "no days".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons() {
        assert_eq!(
            error_reason(
                r#"{"error":true,"reason":"Latitude must be in range of -90 to 90°."}"#.as_bytes()
            )
            .as_deref(),
            Some("Latitude must be in range of -90 to 90°.")
        );
        assert_eq!(error_reason(b"  ").as_deref(), None);
        let long = "x".repeat(500);
        let excerpt = error_reason(long.as_bytes()).unwrap();
        assert_eq!(excerpt.chars().count(), BODY_EXCERPT_CHARS + 1);
    }
}
