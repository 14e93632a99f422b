//! # weather
//!
//! Agora's weather skill: daily forecasts for a place and a window of days.
//!
//! # Pieces
//!
//! - [`WeatherProvider`]: one async method, [`forecast`](WeatherProvider::forecast),
//!   from a [`ForecastQuery`] (a [`Place`]: city name or coordinates; a first day; 1 to
//!   [`MAX_FORECAST_DAYS`] days) to a [`Forecast`] (the resolved [`Location`], one
//!   [`DailyForecast`] per day, the [`ForecastSource`] of the numbers and a human note).
//!   Queries and forecasts are serde types with a schemars JSON Schema, so they travel
//!   in agent messages and constrain LLM output as they are.
//! - [`ClimatologyProvider`] (always built, offline, the default): real observed
//!   climate normals (1981–2010) of 269 cities, compiled into the crate from
//!   GeoRank.place's CC-BY-4.0 datasets (`skills/weather/data/README.md`). It answers with the
//!   monthly mean temperature of each day's month and the annual precipitation and
//!   sunshine, and says in the source and the note that this is climatology, **not a
//!   forecast**. It never invents a number: what the dataset lacks (daily minima and
//!   maxima, daily rain) stays `null`.
//! - `OpenMeteoProvider` (feature `open-meteo`, default): real forecasts from an Open-Meteo server
//!   (the public API by default, any self-hosted one by URL), with city names resolved
//!   through Open-Meteo's geocoding API, per-request timeouts, bounded retries with
//!   exponential backoff, and errors that name the HTTP status, the missing field or
//!   the unknown city.
//! - [`WeatherConfig`] picks one of them (serde, for `agents.toml`), and
//!   [`WeatherConfig::build`] makes it.
//!
//! # Example
//!
//! ```
//! use chrono::NaiveDate;
//! use weather::{ForecastQuery, WeatherConfig, WeatherProvider};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = WeatherConfig::Climatology.build()?;
//! let start = NaiveDate::from_ymd_opt(2026, 7, 30).ok_or("bad date")?;
//! let query = ForecastQuery::city("lisbon", start, 3)?;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let forecast = runtime.block_on(provider.forecast(&query))?;
//!
//! assert_eq!(forecast.location.name, "Lisbon");
//! assert_eq!(forecast.days.len(), 3);
//! assert!(!forecast.source.is_forecast());
//! assert!(forecast.note.contains("not a forecast"));
//! // July and August normals: typical, not predicted.
//! let july = forecast.days[0].temperature_mean_c.ok_or("no mean")?;
//! let august = forecast.days[2].temperature_mean_c.ok_or("no mean")?;
//! println!("{july} °C, then {august} °C: {}", forecast.note);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! An invalid query is [`Error::InvalidQuery`]; a city
//! nobody knows is [`Error::UnknownCity`] (with near matches
//! from the climatology dataset) and a name shared by several cities is
//! [`Error::AmbiguousCity`]. Open-Meteo failures are
//! [`Error::HttpStatus`],
//! [`Error::MalformedResponse`],
//! [`Error::Timeout`] and
//! [`Error::Network`].
//!
//! # Features
//!
//! `open-meteo` (default) adds the Open-Meteo HTTP client (reqwest); `service`
//! (default) adds `WeatherService`, forecasts sold through the negotiation, which
//! pulls in the chain client. With neither, the crate is the offline data layer.
//!
//! # Example
//!
//! ```
//! use weather::{ClimatologyProvider, ForecastQuery};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 15).ok_or("bad date")?;
//! let normals = ClimatologyProvider::new()?.normals(&ForecastQuery::city("Sydney", start, 1)?)?;
//! assert!(normals.note.contains("not a forecast"));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod climatology;
mod config;
mod error;
#[cfg(feature = "open-meteo")]
mod open_meteo;
#[cfg(feature = "service")]
mod service;
mod types;

use async_trait::async_trait;

pub use climatology::{
    CityNormals, ClimatologyProvider, CLIMATOLOGY_ATTRIBUTION, CLIMATOLOGY_DATASET,
    CLIMATOLOGY_LICENSE, CLIMATOLOGY_PERIOD, DEFAULT_MAX_DISTANCE_KM,
};
pub use config::{
    OpenMeteoConfig, RetryPolicy, WeatherConfig, DEFAULT_OPEN_METEO_GEOCODING_URL,
    DEFAULT_OPEN_METEO_URL,
};
pub use error::{Error, Result};
#[cfg(feature = "open-meteo")]
pub use open_meteo::OpenMeteoProvider;
#[cfg(feature = "service")]
pub use service::{WeatherService, FORECAST_KIND};
pub use types::{
    AnnualNormals, DailyForecast, Forecast, ForecastDays, ForecastQuery, ForecastSource, Location,
    Place, MAX_FORECAST_DAYS,
};

/// A source of daily weather forecasts.
///
/// Implementations answer one [`ForecastQuery`] with one [`Forecast`] covering exactly
/// the query's days, in order, and say in [`Forecast::source`] where the numbers come
/// from.
#[async_trait]
pub trait WeatherProvider: Send + Sync + std::fmt::Debug {
    /// The forecast for `query`.
    ///
    /// # Errors
    ///
    /// Provider-specific: see the [module docs](self#errors).
    async fn forecast(&self, query: &ForecastQuery) -> crate::Result<Forecast>;
}

#[async_trait]
impl<P: WeatherProvider + ?Sized> WeatherProvider for Box<P> {
    async fn forecast(&self, query: &ForecastQuery) -> crate::Result<Forecast> {
        (**self).forecast(query).await
    }
}

#[async_trait]
impl<P: WeatherProvider + ?Sized> WeatherProvider for std::sync::Arc<P> {
    async fn forecast(&self, query: &ForecastQuery) -> crate::Result<Forecast> {
        (**self).forecast(query).await
    }
}
