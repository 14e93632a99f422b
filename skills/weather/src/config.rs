//! Choosing and configuring a weather provider.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ClimatologyProvider, WeatherProvider};
use crate::{Error, Result};

/// Open-Meteo's public forecast API (the path `/v1/forecast` is appended).
pub const DEFAULT_OPEN_METEO_URL: &str = "https://api.open-meteo.com";
/// Open-Meteo's public geocoding API (the path `/v1/search` is appended).
pub const DEFAULT_OPEN_METEO_GEOCODING_URL: &str = "https://geocoding-api.open-meteo.com";

/// The most attempts a [`RetryPolicy`] may make.
const MAX_ATTEMPTS_CAP: u32 = 10;

/// Which weather provider an agent uses.
///
/// In TOML: `provider = "climatology"` (the default), or
/// `provider = "open_meteo"` with the fields of [`OpenMeteoConfig`] beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum WeatherConfig {
    /// Offline climate normals ([`ClimatologyProvider`]): real data, not a forecast.
    #[default]
    Climatology,
    /// Forecasts from an Open-Meteo server (needs the `open-meteo` feature).
    OpenMeteo(OpenMeteoConfig),
}

impl WeatherConfig {
    /// Makes the configured provider.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid Open-Meteo configuration, or when Open-Meteo is
    /// asked for in a build without the `weather` feature; [`Error::Dataset`] if the
    /// climatology dataset is broken.
    pub fn build(&self) -> Result<Box<dyn WeatherProvider>> {
        match self {
            Self::Climatology => Ok(Box::new(ClimatologyProvider::new()?)),
            #[cfg(feature = "open-meteo")]
            Self::OpenMeteo(config) => Ok(Box::new(super::OpenMeteoProvider::new(config.clone())?)),
            #[cfg(not(feature = "open-meteo"))]
            Self::OpenMeteo(_) => Err(Error::Config(
                "the Open-Meteo weather provider needs the `open-meteo` feature of the weather crate"
                    .to_owned(),
            )),
        }
    }
}

/// Retries of a failed request: how many attempts, and how long to wait between them.
///
/// Timeouts, connection failures, HTTP 429 and 5xx are retried; other errors are not.
/// The wait doubles after each attempt, from `initial_backoff_ms` up to
/// `max_backoff_ms` (a server's `Retry-After`, when given, is honoured up to the same cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    /// 3 attempts, waiting 250 ms then 500 ms, never more than 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 250,
            max_backoff_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts (1 = no retry), waiting `initial_backoff`,
    /// then twice as long each time, at most `max_backoff`.
    pub fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff_ms: millis(initial_backoff),
            max_backoff_ms: millis(max_backoff),
        }
    }

    /// No retries: one attempt.
    pub fn none() -> Self {
        Self::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1_u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        Duration::from_millis(
            self.initial_backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }

    /// The longest wait between two attempts.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_ATTEMPTS_CAP).contains(&self.max_attempts) {
            return Err(Error::Config(format!(
                "weather retry: max_attempts must be within 1..={MAX_ATTEMPTS_CAP}, got {}",
                self.max_attempts
            )));
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(Error::Config(format!(
                "weather retry: initial_backoff_ms ({}) is above max_backoff_ms ({})",
                self.initial_backoff_ms, self.max_backoff_ms
            )));
        }
        Ok(())
    }
}

/// Settings of the Open-Meteo provider: servers, timeouts, retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenMeteoConfig {
    base_url: String,
    geocoding_url: String,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    max_response_bytes: usize,
    retry: RetryPolicy,
}

impl Default for OpenMeteoConfig {
    /// The public servers, 10 s per request (5 s to connect), 1 MiB responses, the
    /// default [`RetryPolicy`].
    fn default() -> Self {
        Self {
            base_url: DEFAULT_OPEN_METEO_URL.to_owned(),
            geocoding_url: DEFAULT_OPEN_METEO_GEOCODING_URL.to_owned(),
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            max_response_bytes: 1 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

impl OpenMeteoConfig {
    /// The forecast server, e.g. `http://127.0.0.1:8080` for a self-hosted one; requests go
    /// to `<base_url>/v1/forecast`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The geocoding server; requests go to `<geocoding_url>/v1/search`.
    pub fn with_geocoding_url(mut self, url: impl Into<String>) -> Self {
        self.geocoding_url = url.into();
        self
    }

    /// The limit on one request, from connecting to the end of the body.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = millis(timeout);
        self
    }

    /// The limit on connecting.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout_ms = millis(timeout);
        self
    }

    /// The retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The largest response body accepted.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The forecast server's base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// The geocoding server's base URL (no trailing slash).
    pub fn geocoding_url(&self) -> &str {
        self.geocoding_url.trim_end_matches('/')
    }

    /// The limit on one request.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The limit on connecting.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The largest response body accepted.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Checks the URLs, timeouts and retry policy.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        for (what, url) in [
            ("base_url", self.base_url()),
            ("geocoding_url", self.geocoding_url()),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "weather {what} must be an http:// or https:// URL, got {url:?}"
                )));
            }
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(Error::Config(
                "weather timeouts must be above 0 ms".to_owned(),
            ));
        }
        if self.max_response_bytes == 0 {
            return Err(Error::Config(
                "weather max_response_bytes must be above 0".to_owned(),
            ));
        }
        self.retry.validate()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u128> = (1..=5).map(|a| p.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        assert_eq!(p.backoff(200), Duration::from_millis(350));
    }

    #[test]
    fn config_from_toml_like_json() {
        let c: WeatherConfig = serde_json::from_str(r#"{"provider":"climatology"}"#).unwrap();
        assert_eq!(c, WeatherConfig::Climatology);
        let c: WeatherConfig = serde_json::from_str(
            r#"{"provider":"open_meteo","base_url":"http://127.0.0.1:9/","timeout_ms":500,"retry":{"max_attempts":2}}"#,
        )
        .unwrap();
        let WeatherConfig::OpenMeteo(om) = c else {
            panic!("not open_meteo")
        };
        assert_eq!(om.base_url(), "http://127.0.0.1:9");
        assert_eq!(om.geocoding_url(), DEFAULT_OPEN_METEO_GEOCODING_URL);
        assert_eq!(om.timeout(), Duration::from_millis(500));
        assert_eq!(om.retry().max_attempts(), 2);
        assert!(om.validate().is_ok());
        assert!(serde_json::from_str::<WeatherConfig>(
            r#"{"provider":"open_meteo","base_ur":"http://x"}"#
        )
        .is_err());
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            OpenMeteoConfig::default().with_base_url("ftp://x"),
            OpenMeteoConfig::default().with_timeout(Duration::ZERO),
            OpenMeteoConfig::default().with_retry(RetryPolicy::new(
                0,
                Duration::ZERO,
                Duration::ZERO,
            )),
            OpenMeteoConfig::default().with_retry(RetryPolicy::new(
                11,
                Duration::ZERO,
                Duration::ZERO,
            )),
            OpenMeteoConfig::default().with_retry(RetryPolicy::new(
                2,
                Duration::from_secs(2),
                Duration::from_secs(1),
            )),
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(Error::Config(_))),
                "{config:?}"
            );
        }
        assert!(OpenMeteoConfig::default().validate().is_ok());
    }
}
