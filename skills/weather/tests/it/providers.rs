//! `skills::weather`: the offline climatology provider on its real dataset, and the
//! Open-Meteo provider against a local HTTP server on 127.0.0.1 that replays
//! Open-Meteo-format fixtures (`skills/weather/tests/fixtures/open-meteo/`). Nothing here
//! reaches the internet.

use chrono::NaiveDate;
use weather::Error;
use weather::{
    ClimatologyProvider, Forecast, ForecastDays, ForecastQuery, ForecastSource, Place,
    WeatherConfig, WeatherProvider,
};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn query(place: Place, start: &str, days: u8) -> ForecastQuery {
    ForecastQuery::new(place, date(start), ForecastDays::new(days).unwrap()).unwrap()
}

fn climatology() -> ClimatologyProvider {
    ClimatologyProvider::new().unwrap()
}

/// The climatology's mean temperature for `city` on the 15th of `month`.
fn mean_c(city: &str, month: u32) -> f64 {
    let start = format!("2026-{month:02}-15");
    let forecast = climatology()
        .normals(&query(Place::city(city), &start, 1))
        .unwrap();
    forecast.days[0].temperature_mean_c.unwrap()
}

#[test]
fn climatology_northern_summer_is_warmer_than_winter() {
    for city in [
        "Lisbon",
        "London",
        "Madrid",
        "Tokyo",
        "New York City",
        "Moscow",
    ] {
        let (january, july) = (mean_c(city, 1), mean_c(city, 7));
        assert!(
            july > january + 5.0,
            "{city}: January {january}, July {july}"
        );
    }
}

#[test]
fn climatology_southern_hemisphere_is_reversed() {
    for city in [
        "Sydney",
        "Buenos Aires",
        "Cape Town",
        "Santiago",
        "Auckland",
    ] {
        let (january, july) = (mean_c(city, 1), mean_c(city, 7));
        assert!(
            january > july + 4.0,
            "{city}: January {january}, July {july}"
        );
    }
}

#[test]
fn climatology_tropics_and_deserts_look_like_themselves() {
    // Singapore hardly has seasons; Helsinki's winter is below freezing.
    assert!((mean_c("Singapore", 1) - mean_c("Singapore", 7)).abs() < 3.0);
    assert!(mean_c("Helsinki", 1) < 0.0);
    let provider = climatology();
    let annual = |city: &str| provider.city(city, None).unwrap().annual_precipitation_mm();
    // Cairo is desert, Mumbai has the monsoon, London sits between.
    assert!(annual("Cairo") < 100);
    assert!(annual("Mumbai") > 1500);
    assert!((300..1200).contains(&annual("London")));
    let sunshine = |city: &str| provider.city(city, None).unwrap().annual_sunshine_hours();
    assert!(sunshine("Lisbon") > sunshine("London") + 800);
}

#[tokio::test]
async fn climatology_says_it_is_not_a_forecast() {
    let provider = climatology();
    // Through the trait, as an agent would call it; the window spans two months.
    let forecast: Forecast = provider
        .forecast(&query(Place::city("lisbon"), "2026-07-30", 3))
        .await
        .unwrap();
    assert_eq!(forecast.location.name, "Lisbon");
    assert_eq!(forecast.location.country.as_deref(), Some("PT"));
    let dates: Vec<NaiveDate> = forecast.days.iter().map(|d| d.date).collect();
    assert_eq!(
        dates,
        [date("2026-07-30"), date("2026-07-31"), date("2026-08-01")]
    );
    assert_eq!(
        forecast.days[0].temperature_mean_c,
        forecast.days[1].temperature_mean_c
    );
    assert_eq!(
        forecast.days[2].temperature_mean_c,
        Some(climatology().city("Lisbon", None).unwrap().monthly_mean_c()[7])
    );
    for day in &forecast.days {
        // Not in the dataset, so not made up.
        assert_eq!(day.temperature_min_c, None);
        assert_eq!(day.temperature_max_c, None);
        assert_eq!(day.precipitation_mm, None);
        assert_eq!(day.sunshine_hours, None);
    }
    assert!(!forecast.source.is_forecast());
    match &forecast.source {
        ForecastSource::Climatology {
            dataset,
            license,
            period,
            attribution,
        } => {
            assert!(
                dataset.contains("world-temperature-data 0.1.0"),
                "{dataset}"
            );
            assert_eq!(license, "CC-BY-4.0");
            assert_eq!(period, "1981-2010");
            assert!(attribution.contains("GeoRank.place"), "{attribution}");
        }
        other => panic!("{other:?}"),
    }
    let note = &forecast.note;
    assert!(
        note.starts_with("Climatological normals for July and August"),
        "{note}"
    );
    assert!(note.contains("not a forecast"), "{note}");
    let annual = forecast.annual.as_ref().unwrap();
    assert!(
        note.contains(&format!("{} mm", annual.precipitation_mm)),
        "{note}"
    );
}

#[test]
fn climatology_lookup_ignores_case_accents_and_punctuation() {
    let provider = climatology();
    for (asked, found) in [
        ("são paulo", "São Paulo"),
        ("SAO PAULO", "São Paulo"),
        ("Sao-Paulo", "São Paulo"),
        ("krakow", "Kraków"),
        ("chisinau", "Chișinău"),
        ("Funchal", "Funchal (Madeira)"),
        ("  Montreal ", "Montréal"),
    ] {
        let forecast = provider
            .normals(&query(Place::city(asked), "2026-01-10", 1))
            .unwrap();
        assert_eq!(forecast.location.name, found, "{asked}");
    }
    let forecast = provider
        .normals(&query(Place::city_in("guadalajara", "mx"), "2026-01-10", 1))
        .unwrap();
    assert_eq!(forecast.location.country.as_deref(), Some("MX"));
}

#[test]
fn climatology_unknown_city_lists_near_matches() {
    let provider = climatology();
    let err = provider
        .normals(&query(Place::city("Lisbonn"), "2026-01-10", 1))
        .unwrap_err();
    match &err {
        Error::UnknownCity { query, suggestions } => {
            assert_eq!(query, "Lisbonn");
            assert_eq!(suggestions.first().map(String::as_str), Some("Lisbon (PT)"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("did you mean Lisbon (PT)"),
        "{err}"
    );

    // The right name in the wrong country.
    let err = provider
        .normals(&query(Place::city_in("Lisbon", "ES"), "2026-01-10", 1))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownCity { suggestions, .. } if suggestions.contains(&"Lisbon (PT)".to_owned())),
        "{err:?}"
    );

    // Nothing close at all: no suggestions, still a clear error.
    let err = provider
        .normals(&query(Place::city("Qqqzzzx"), "2026-01-10", 1))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownCity { suggestions, .. } if suggestions.is_empty()),
        "{err:?}"
    );
}

#[test]
fn climatology_coordinates_resolve_to_the_nearest_city() {
    let provider = climatology();
    // Lisbon airport, about 7 km from the city centre.
    let forecast = provider
        .normals(&query(
            Place::Coordinates {
                latitude: 38.7742,
                longitude: -9.1342,
                name: Some("Lisbon airport".to_owned()),
            },
            "2026-07-01",
            1,
        ))
        .unwrap();
    assert_eq!(forecast.location.name, "Lisbon airport");
    assert_eq!(forecast.location.latitude, 38.7742);
    assert_eq!(forecast.location.country, None);
    assert!(
        forecast.note.contains("Lisbon (PT), the nearest city"),
        "{}",
        forecast.note
    );
    assert_eq!(
        forecast.days[0].temperature_mean_c,
        Some(mean_c("Lisbon", 7))
    );

    // The middle of the Atlantic is far from every city of the dataset.
    let err = provider
        .normals(&query(Place::coordinates(30.0, -40.0), "2026-07-01", 1))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownCity { .. }), "{err:?}");
}

#[test]
fn forecast_serialises_with_its_schema() {
    let forecast = climatology()
        .normals(&query(Place::city("Sydney"), "2026-12-31", 2))
        .unwrap();
    let json = serde_json::to_value(&forecast).unwrap();
    assert_eq!(json["source"]["kind"], "climatology");
    assert_eq!(json["days"][1]["date"], "2027-01-01");
    assert!(json["days"][0]["temperature_max_c"].is_null());
    let back: Forecast = serde_json::from_value(json).unwrap();
    assert_eq!(back, forecast);

    let schema = serde_json::to_value(schemars::schema_for!(Forecast)).unwrap();
    for field in ["location", "days", "source", "annual", "note"] {
        assert!(schema["properties"].get(field).is_some(), "{field}");
    }
}

#[tokio::test]
async fn config_builds_the_climatology_by_default() {
    let provider = WeatherConfig::default().build().unwrap();
    let forecast = provider
        .forecast(&query(Place::city("Cape Town"), "2026-01-01", 1))
        .await
        .unwrap();
    assert!(!forecast.source.is_forecast());
}

#[cfg(not(feature = "open-meteo"))]
#[test]
fn open_meteo_needs_the_open_meteo_feature() {
    let config = WeatherConfig::OpenMeteo(weather::OpenMeteoConfig::default());
    assert!(matches!(config.build(), Err(Error::Config(_))));
}

#[cfg(feature = "open-meteo")]
mod open_meteo {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::{RawQuery, State};
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;
    use weather::{OpenMeteoConfig, OpenMeteoProvider, RetryPolicy};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/open-meteo");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// One scripted answer of the fake forecast endpoint.
    #[derive(Clone)]
    struct Reply {
        status: StatusCode,
        body: String,
        /// Never sent: the server holds the request until the client gives up.
        hang: bool,
    }

    impl Reply {
        fn ok(body: String) -> Self {
            Self {
                status: StatusCode::OK,
                body,
                hang: false,
            }
        }

        fn status(status: u16, body: &str) -> Self {
            Self {
                status: StatusCode::from_u16(status).unwrap(),
                body: body.to_owned(),
                hang: false,
            }
        }

        fn never(mut self) -> Self {
            self.hang = true;
            self
        }

        fn into_response(self) -> Response {
            (
                self.status,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                self.body,
            )
                .into_response()
        }
    }

    #[derive(Default)]
    struct Recorded {
        /// Answers of `/v1/forecast`, in order; the Lisbon fixture once they run out.
        script: VecDeque<Reply>,
        /// Query strings received, per endpoint.
        searches: Vec<String>,
        forecasts: Vec<String>,
    }

    type Shared = Arc<Mutex<Recorded>>;

    /// A local stand-in for both Open-Meteo APIs on 127.0.0.1, port 0.
    struct FakeOpenMeteo {
        addr: SocketAddr,
        state: Shared,
        server: tokio::task::JoinHandle<()>,
    }

    impl FakeOpenMeteo {
        async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
            let state: Shared = Arc::default();
            state.lock().unwrap().script.extend(script);
            let app = Router::new()
                .route("/v1/search", get(search))
                .route("/v1/forecast", get(forecast))
                .with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self {
                addr,
                state,
                server,
            }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// Settings pointing both APIs here, with short timeouts and backoffs.
        fn config(&self) -> OpenMeteoConfig {
            OpenMeteoConfig::default()
                .with_base_url(self.url())
                .with_geocoding_url(format!("{}/", self.url()))
                .with_timeout(Duration::from_secs(5))
                .with_retry(RetryPolicy::new(
                    3,
                    Duration::from_millis(10),
                    Duration::from_millis(40),
                ))
        }

        fn provider(&self) -> OpenMeteoProvider {
            OpenMeteoProvider::new(self.config()).unwrap()
        }

        fn searches(&self) -> Vec<String> {
            self.state.lock().unwrap().searches.clone()
        }

        fn forecasts(&self) -> Vec<String> {
            self.state.lock().unwrap().forecasts.clone()
        }
    }

    impl Drop for FakeOpenMeteo {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn search(State(state): State<Shared>, RawQuery(query): RawQuery) -> Response {
        let query = query.unwrap_or_default();
        state.lock().unwrap().searches.push(query.clone());
        let body = if query.contains("name=Lisbon&") {
            fixture("geocoding-lisbon.json")
        } else {
            fixture("geocoding-no-results.json")
        };
        Reply::ok(body).into_response()
    }

    async fn forecast(State(state): State<Shared>, RawQuery(query): RawQuery) -> Response {
        let reply = {
            let mut state = state.lock().unwrap();
            state.forecasts.push(query.unwrap_or_default());
            state.script.pop_front()
        };
        let reply = reply.unwrap_or_else(|| Reply::ok(fixture("forecast-lisbon-3days.json")));
        if reply.hang {
            std::future::pending::<()>().await;
        }
        reply.into_response()
    }

    fn lisbon_july() -> ForecastQuery {
        query(Place::city("Lisbon"), "2026-07-01", 3)
    }

    /// Fails the test instead of hanging it if a bound is broken.
    async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), future)
            .await
            .expect("the weather call did not finish within 30 s")
    }

    #[tokio::test]
    async fn city_forecast_geocodes_then_parses_the_daily_block() {
        let server = FakeOpenMeteo::start([]).await;
        let forecast = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap();

        assert_eq!(
            server.searches(),
            ["name=Lisbon&count=1&language=en&format=json"]
        );
        assert_eq!(
            server.forecasts(),
            ["latitude=38.71667&longitude=-9.13333\
              &daily=temperature_2m_max%2Ctemperature_2m_min%2Cprecipitation_sum%2Csunshine_duration\
              &timezone=auto&start_date=2026-07-01&end_date=2026-07-03"]
        );

        assert_eq!(forecast.location.name, "Lisbon");
        assert_eq!(forecast.location.country.as_deref(), Some("PT"));
        assert_eq!(forecast.location.latitude, 38.71667);
        let max: Vec<_> = forecast.days.iter().map(|d| d.temperature_max_c).collect();
        let min: Vec<_> = forecast.days.iter().map(|d| d.temperature_min_c).collect();
        let rain: Vec<_> = forecast.days.iter().map(|d| d.precipitation_mm).collect();
        let sun: Vec<_> = forecast.days.iter().map(|d| d.sunshine_hours).collect();
        assert_eq!(max, [Some(27.9), Some(29.4), Some(31.2)]);
        assert_eq!(min, [Some(18.3), Some(18.9), Some(19.6)]);
        assert_eq!(rain, [Some(0.0), Some(0.0), Some(0.2)]);
        // 46512.41 s of sunshine is 12.9 h.
        assert_eq!(sun, [Some(12.9), Some(12.7), Some(10.9)]);
        assert_eq!(forecast.days[2].date, date("2026-07-03"));
        assert!(forecast.source.is_forecast());
        assert_eq!(
            forecast.source,
            ForecastSource::OpenMeteo {
                base_url: server.url(),
                license: "CC-BY-4.0".to_owned(),
                attribution: "Weather data by Open-Meteo.com".to_owned(),
            }
        );
        assert_eq!(forecast.annual, None);
        assert!(forecast.note.contains("Europe/Lisbon"), "{}", forecast.note);
    }

    #[tokio::test]
    async fn coordinates_skip_the_geocoder() {
        let server = FakeOpenMeteo::start([]).await;
        let forecast = bounded(server.provider().forecast(&query(
            Place::coordinates(38.7, -9.125),
            "2026-07-01",
            3,
        )))
        .await
        .unwrap();
        assert!(server.searches().is_empty());
        let asked = server.forecasts();
        assert!(
            asked[0].starts_with("latitude=38.7&longitude=-9.125&"),
            "{asked:?}"
        );
        assert_eq!(forecast.location.name, "38.7000, -9.1250");
        assert_eq!(forecast.location.country, None);
    }

    #[tokio::test]
    async fn geocoding_miss_is_an_unknown_city() {
        let server = FakeOpenMeteo::start([]).await;
        let err = bounded(server.provider().forecast(&query(
            Place::city_in("Atlantis", "gr"),
            "2026-07-01",
            1,
        )))
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownCity { query, .. } if query == "Atlantis, GR"),
            "{err:?}"
        );
        assert_eq!(
            server.searches(),
            ["name=Atlantis&count=1&language=en&format=json&countryCode=GR"]
        );
        assert!(server.forecasts().is_empty());
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_success() {
        let server = FakeOpenMeteo::start([
            Reply::status(500, "Internal Server Error"),
            Reply::status(503, ""),
        ])
        .await;
        let forecast = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap();
        assert_eq!(forecast.days.len(), 3);
        assert_eq!(server.forecasts().len(), 3);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let server = FakeOpenMeteo::start(vec![Reply::status(502, "Bad Gateway"); 5]).await;
        let err = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap_err();
        match &err {
            Error::HttpStatus {
                status,
                reason,
                url,
            } => {
                assert_eq!(*status, 502);
                assert_eq!(reason.as_deref(), Some("Bad Gateway"));
                assert!(
                    url.starts_with(&format!("{}/v1/forecast?", server.url())),
                    "{url}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("HTTP 502 from http://127.0.0.1:"),
            "{err}"
        );
        assert_eq!(server.forecasts().len(), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_keep_the_reason() {
        let server = FakeOpenMeteo::start([Reply::status(
            400,
            &fixture("error-start-date-out-of-range.json"),
        )])
        .await;
        let err = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap_err();
        match &err {
            Error::HttpStatus { status, reason, .. } => {
                assert_eq!(*status, 400);
                assert_eq!(
                    reason.as_deref(),
                    Some("Parameter 'start_date' is out of allowed range from 2016-01-01 to 2026-12-10")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.forecasts().len(), 1);
    }

    #[tokio::test]
    async fn a_missing_field_is_named() {
        let server =
            FakeOpenMeteo::start([Reply::ok(fixture("forecast-missing-temperature-max.json"))])
                .await;
        let err = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap_err();
        match &err {
            Error::MalformedResponse { reason, .. } => {
                assert_eq!(reason, "missing field `daily.temperature_2m_max`")
            }
            other => panic!("{other:?}"),
        }
        // A malformed answer is not retried: asking again would get the same.
        assert_eq!(server.forecasts().len(), 1);
    }

    #[tokio::test]
    async fn malformed_bodies_are_clear_errors() {
        let good = fixture("forecast-lisbon-3days.json");
        let cases = [
            ("<html>Bad gateway</html>".to_owned(), "not valid JSON"),
            (
                good.replacen(
                    r#""temperature_2m_max":"°C""#,
                    r#""temperature_2m_max":"°F""#,
                    1,
                ),
                "`daily_units.temperature_2m_max` is \"°F\", expected \"°C\"",
            ),
            (
                good.replace(r#""2026-07-03"],"#, r#""2026-07-03","2026-07-04"],"#),
                "`daily.time` covers 4 day(s), 2026-07-01 to 2026-07-04",
            ),
            (
                good.replace("[27.9,29.4,31.2]", "[27.9,\"hot\",31.2]"),
                "`daily.temperature_2m_max[1]` is not a number",
            ),
            (
                good.replace("[27.9,29.4,31.2]", "[27.9,31.2]"),
                "`daily.temperature_2m_max` has 2 values for 3 days",
            ),
        ];
        for (body, expected) in cases {
            let server = FakeOpenMeteo::start([Reply::ok(body)]).await;
            let err = bounded(server.provider().forecast(&lisbon_july()))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::MalformedResponse { reason, .. } if reason.contains(expected)),
                "expected {expected:?}, got {err}"
            );
        }
    }

    #[tokio::test]
    async fn missing_values_are_null_not_errors() {
        let body =
            fixture("forecast-lisbon-3days.json").replace("[0.00,0.00,0.20]", "[0.00,null,0.20]");
        let server = FakeOpenMeteo::start([Reply::ok(body)]).await;
        let forecast = bounded(server.provider().forecast(&lisbon_july()))
            .await
            .unwrap();
        assert_eq!(forecast.days[1].precipitation_mm, None);
        assert_eq!(forecast.days[2].precipitation_mm, Some(0.2));
    }

    #[tokio::test]
    async fn a_slow_server_times_out_after_bounded_attempts() {
        let slow = Reply::ok(fixture("forecast-lisbon-3days.json")).never();
        let server = FakeOpenMeteo::start(vec![slow; 3]).await;
        let config = server
            .config()
            .with_timeout(Duration::from_millis(200))
            .with_retry(RetryPolicy::new(
                2,
                Duration::from_millis(10),
                Duration::from_millis(10),
            ));
        let provider = OpenMeteoProvider::new(config).unwrap();
        let err =
            bounded(provider.forecast(&query(Place::coordinates(38.7, -9.1), "2026-07-01", 3)))
                .await
                .unwrap_err();
        match &err {
            Error::Timeout {
                attempts,
                timeout_ms,
                ..
            } => {
                assert_eq!(*attempts, 2);
                assert_eq!(*timeout_ms, 200);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.forecasts().len(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_network_error() {
        // A port this test holds without listening on it: connections are refused,
        // and nothing else can take the port meanwhile.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let config = OpenMeteoConfig::default()
            .with_base_url(format!("http://{addr}"))
            .with_retry(RetryPolicy::new(
                2,
                Duration::from_millis(10),
                Duration::from_millis(10),
            ));
        let provider = OpenMeteoProvider::new(config).unwrap();
        let err = bounded(provider.forecast(&query(Place::coordinates(0.0, 0.0), "2026-07-01", 1)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Network { attempts: 2, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn config_builds_open_meteo() {
        let server = FakeOpenMeteo::start([]).await;
        let provider = WeatherConfig::OpenMeteo(server.config()).build().unwrap();
        let forecast = bounded(provider.forecast(&lisbon_july())).await.unwrap();
        assert!(forecast.source.is_forecast());

        let bad = WeatherConfig::OpenMeteo(server.config().with_base_url("localhost:80"));
        assert!(matches!(bad.build(), Err(Error::Config(_))));
    }
}
