//! `skills::weather`: the offline climatology provider on its real dataset.

use chrono::NaiveDate;
use skills::weather::{
    ClimatologyProvider, Forecast, ForecastDays, ForecastQuery, ForecastSource, Place,
    WeatherProvider,
};
use skills::Error;

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
