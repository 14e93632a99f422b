//! Queries and forecasts: the plain data every weather provider speaks.

use std::borrow::Cow;
use std::fmt;

use chrono::{Datelike, Days, NaiveDate};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most days one query may ask for (Open-Meteo's forecast horizon).
pub const MAX_FORECAST_DAYS: u8 = 16;

/// How many days a query covers: `1..=`[`MAX_FORECAST_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct ForecastDays(u8);

impl ForecastDays {
    /// `days` if it is within `1..=MAX_FORECAST_DAYS`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuery`] when `days` is 0 or above [`MAX_FORECAST_DAYS`].
    pub fn new(days: u8) -> Result<Self> {
        if (1..=MAX_FORECAST_DAYS).contains(&days) {
            Ok(Self(days))
        } else {
            Err(Error::InvalidQuery {
                reason: format!("days must be within 1..={MAX_FORECAST_DAYS}, got {days}"),
            })
        }
    }

    /// The number of days.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for ForecastDays {
    type Error = Error;

    fn try_from(days: u8) -> Result<Self> {
        Self::new(days)
    }
}

impl From<ForecastDays> for u8 {
    fn from(days: ForecastDays) -> Self {
        days.0
    }
}

impl fmt::Display for ForecastDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for ForecastDays {
    fn schema_name() -> Cow<'static, str> {
        "ForecastDays".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Number of days, 1 to 16.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_FORECAST_DAYS,
        })
    }
}

/// Where a forecast is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Place {
    /// A city by name, looked up case- and accent-insensitively (the climatology
    /// dataset) or through a geocoder (Open-Meteo).
    City {
        /// The city's name, e.g. `"Lisbon"` or `"São Paulo"`.
        name: String,
        /// ISO 3166-1 alpha-2 country code to pick among cities of the same name, e.g. `"PT"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        country: Option<String>,
    },
    /// A point on the globe (WGS84 degrees).
    Coordinates {
        /// Latitude, -90 to 90.
        latitude: f64,
        /// Longitude, -180 to 180.
        longitude: f64,
        /// A label for the answer, e.g. `"Lisbon airport"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl Place {
    /// A city by name, any country.
    pub fn city(name: impl Into<String>) -> Self {
        Self::City {
            name: name.into(),
            country: None,
        }
    }

    /// A city by name in the country with this ISO 3166-1 alpha-2 code.
    pub fn city_in(name: impl Into<String>, country: impl Into<String>) -> Self {
        Self::City {
            name: name.into(),
            country: Some(country.into()),
        }
    }

    /// A point given by latitude and longitude (WGS84 degrees).
    pub fn coordinates(latitude: f64, longitude: f64) -> Self {
        Self::Coordinates {
            latitude,
            longitude,
            name: None,
        }
    }

    /// Checks the fields and normalises the country code to upper case.
    fn validated(self) -> Result<Self> {
        let invalid = |reason: String| Err(Error::InvalidQuery { reason });
        match self {
            Self::City { name, country } => {
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return invalid("the city name is empty".to_owned());
                }
                if name.chars().count() > 100 {
                    return invalid("the city name is longer than 100 characters".to_owned());
                }
                let country = match country {
                    None => None,
                    Some(code) => {
                        let code = code.trim().to_ascii_uppercase();
                        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                            return invalid(format!(
                                "country must be an ISO 3166-1 alpha-2 code such as \"PT\", got {code:?}"
                            ));
                        }
                        Some(code)
                    }
                };
                Ok(Self::City { name, country })
            }
            Self::Coordinates {
                latitude,
                longitude,
                name,
            } => {
                if !(-90.0..=90.0).contains(&latitude) {
                    return invalid(format!("latitude must be within -90..=90, got {latitude}"));
                }
                if !(-180.0..=180.0).contains(&longitude) {
                    return invalid(format!(
                        "longitude must be within -180..=180, got {longitude}"
                    ));
                }
                Ok(Self::Coordinates {
                    latitude,
                    longitude,
                    name,
                })
            }
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::City {
                name,
                country: Some(country),
            } => write!(f, "{name}, {country}"),
            Self::City {
                name,
                country: None,
            } => f.write_str(name),
            Self::Coordinates {
                name: Some(name), ..
            } => f.write_str(name),
            Self::Coordinates {
                latitude,
                longitude,
                name: None,
            } => write!(f, "{latitude:.4}, {longitude:.4}"),
        }
    }
}

/// The fields of a [`ForecastQuery`] before validation (what arrives over the wire).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ForecastQuery")]
struct RawForecastQuery {
    /// Where the forecast is for.
    place: Place,
    /// First day, ISO 8601 (`YYYY-MM-DD`), in the place's local time.
    start: NaiveDate,
    /// Number of days from `start`, 1 to 16.
    days: ForecastDays,
}

/// A request for a daily forecast: a place, a first day and a number of days.
///
/// Always valid: the constructors and deserialization check the city name, the
/// country code, the coordinate ranges and the number of days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "RawForecastQuery")]
pub struct ForecastQuery {
    place: Place,
    start: NaiveDate,
    days: ForecastDays,
}

impl ForecastQuery {
    /// A query for `days` days from `start` at `place`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuery`] for an empty city name, a country that is not two
    /// letters, coordinates out of range, or a window that runs past the calendar.
    pub fn new(place: Place, start: NaiveDate, days: ForecastDays) -> Result<Self> {
        let place = place.validated()?;
        if start
            .checked_add_days(Days::new(u64::from(days.get())))
            .is_none()
        {
            return Err(Error::InvalidQuery {
                reason: format!("{days} days from {start} run past the calendar"),
            });
        }
        Ok(Self { place, start, days })
    }

    /// Shorthand for a city by name: `ForecastQuery::city("Lisbon", start, 3)`.
    ///
    /// # Errors
    ///
    /// As [`ForecastQuery::new`], and when `days` is not within `1..=16`.
    pub fn city(name: impl Into<String>, start: NaiveDate, days: u8) -> Result<Self> {
        Self::new(Place::city(name), start, ForecastDays::new(days)?)
    }

    /// Where the forecast is for.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The first day.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// How many days.
    pub fn days(&self) -> ForecastDays {
        self.days
    }

    /// The last day (inclusive).
    pub fn end(&self) -> NaiveDate {
        // `new` checked that `start + days` exists, so `start + days - 1` does too.
        self.start
            .checked_add_days(Days::new(u64::from(self.days.get()).saturating_sub(1)))
            .unwrap_or(self.start)
    }

    /// Every day of the window, in order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take(usize::from(self.days.get()))
    }
}

impl TryFrom<RawForecastQuery> for ForecastQuery {
    type Error = Error;

    fn try_from(raw: RawForecastQuery) -> Result<Self> {
        Self::new(raw.place, raw.start, raw.days)
    }
}

/// The place a forecast is for, as the provider resolved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    /// Name of the place (the city's name, or a label for coordinates).
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, when known.
    pub country: Option<String>,
    /// Latitude, WGS84 degrees.
    pub latitude: f64,
    /// Longitude, WGS84 degrees.
    pub longitude: f64,
}

/// One day of a forecast. A field is `null` when the source has no such figure for a
/// day (the climatology has monthly means only; see [`Forecast::note`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DailyForecast {
    /// The day, in the place's local time.
    pub date: NaiveDate,
    /// Lowest air temperature at 2 m, °C.
    pub temperature_min_c: Option<f64>,
    /// Highest air temperature at 2 m, °C.
    pub temperature_max_c: Option<f64>,
    /// Mean air temperature at 2 m, °C.
    pub temperature_mean_c: Option<f64>,
    /// Total precipitation (rain, showers, snow as water), mm.
    pub precipitation_mm: Option<f64>,
    /// Sunshine duration, hours.
    pub sunshine_hours: Option<f64>,
}

/// Where the numbers of a forecast come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForecastSource {
    /// A numerical weather forecast from an Open-Meteo server.
    OpenMeteo {
        /// The forecast API's base URL.
        base_url: String,
        /// Licence of the data (Open-Meteo serves CC-BY-4.0 data).
        license: String,
        /// The credit the licence asks for.
        attribution: String,
    },
    /// Long-term climate normals of a dataset: what is typical, not a forecast.
    Climatology {
        /// The dataset (packages and versions).
        dataset: String,
        /// Licence of the data.
        license: String,
        /// The years the normals describe, e.g. `"1981-2010"`.
        period: String,
        /// The credit the licence asks for.
        attribution: String,
    },
}

impl ForecastSource {
    /// Whether these numbers are a forecast of the actual days (not climatology).
    pub fn is_forecast(&self) -> bool {
        matches!(self, Self::OpenMeteo { .. })
    }
}

/// Annual climate normals of a place (climatology answers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnnualNormals {
    /// Mean of the twelve monthly mean temperatures, °C.
    pub mean_temperature_c: f64,
    /// Mean annual precipitation, mm.
    pub precipitation_mm: u32,
    /// Mean annual sunshine duration, hours.
    pub sunshine_hours: u32,
}

/// A daily forecast for a place, with where its numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Forecast {
    /// The place, as resolved by the provider.
    pub location: Location,
    /// One entry per day of the query, in order.
    pub days: Vec<DailyForecast>,
    /// Where the numbers come from.
    pub source: ForecastSource,
    /// Annual normals of the place, when the source is climatology.
    pub annual: Option<AnnualNormals>,
    /// A human note on what the numbers are (for climatology: normals, not a forecast).
    pub note: String,
}

/// Calendar month name, for notes.
pub(crate) fn month_name(date: NaiveDate) -> &'static str {
    match date.month() {
        1 => "January",
        2 => "February",
        3 => "March",
        4 => "April",
        5 => "May",
        6 => "June",
        7 => "July",
        8 => "August",
        9 => "September",
        10 => "October",
        11 => "November",
        _ => "December",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn days_are_bounded() {
        assert!(ForecastDays::new(0).is_err());
        assert_eq!(ForecastDays::new(1).unwrap().get(), 1);
        assert_eq!(ForecastDays::new(16).unwrap().get(), 16);
        assert!(matches!(
            ForecastDays::new(17),
            Err(Error::InvalidQuery { .. })
        ));
    }

    #[test]
    fn query_round_trips_and_validates_on_deserialize() {
        let q = ForecastQuery::new(
            Place::city_in(" Lisbon ", "pt"),
            date("2026-07-30"),
            ForecastDays::new(3).unwrap(),
        )
        .unwrap();
        assert_eq!(q.place(), &Place::city_in("Lisbon", "PT"));
        assert_eq!(q.end(), date("2026-08-01"));
        assert_eq!(q.dates().count(), 3);
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(
            json,
            r#"{"place":{"city":{"name":"Lisbon","country":"PT"}},"start":"2026-07-30","days":3}"#
        );
        assert_eq!(serde_json::from_str::<ForecastQuery>(&json).unwrap(), q);

        for bad in [
            r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":0}"#,
            r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":17}"#,
            r#"{"place":{"city":{"name":"  "}},"start":"2026-07-30","days":1}"#,
            r#"{"place":{"city":{"name":"Lisbon","country":"PRT"}},"start":"2026-07-30","days":1}"#,
            r#"{"place":{"coordinates":{"latitude":91,"longitude":0}},"start":"2026-07-30","days":1}"#,
            r#"{"place":{"coordinates":{"latitude":0,"longitude":-181}},"start":"2026-07-30","days":1}"#,
            r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-13-01","days":1}"#,
            r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":1,"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<ForecastQuery>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_schema_bounds_days() {
        let schema = serde_json::to_value(schemars::schema_for!(ForecastQuery)).unwrap();
        let days = &schema["properties"]["days"];
        let days = match days.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => &schema["$defs"][r.trim_start_matches("#/$defs/")],
            None => days,
        };
        assert_eq!(days["minimum"], 1);
        assert_eq!(days["maximum"], 16);
        assert_eq!(
            schema["required"],
            serde_json::json!(["place", "start", "days"])
        );
    }
}
