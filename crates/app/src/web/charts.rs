//! The dashboard's charts, drawn on the server as SVG with the `plotters` chart library: the
//! page shows them as images, so it needs no script library and works offline.
//! `/charts/duration.svg`, `/charts/size.svg` and `/charts/results.svg`, each over `days`
//! (default 30) of the state database's per-source history.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use plotters::prelude::*;

use super::{ApiError, Web};
use crate::daemon::state::SourcePoint;

const SIZE: (u32, u32) = (640, 260);
const DAY: i64 = 86_400;

pub async fn chart(
    State(web): State<Arc<Web>>,
    Path(file): Path<String>,
    query: super::DaysAsked,
) -> Result<impl IntoResponse, ApiError> {
    let since = super::since_days(query)?;
    let now = Timestamp::now();
    let history = web.daemon.with_state(|s| s.source_history(since))?;
    let window = (since.as_second(), now.as_second());
    let drawn = fitted(&history, window);
    let svg = match file.as_str() {
        "duration.svg" => lines(&history, drawn, "Backup duration", "seconds", |p| {
            p.duration_secs
        }),
        "size.svg" => lines(&history, drawn, "Backup size", "MiB", |p| {
            p.bytes.map(|b| b as f64 / 1_048_576.0)
        }),
        "results.svg" => strip(&history, window),
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such chart")),
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("drawing {file}: {e}"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    ))
}

type Drawn = Result<String, Box<dyn std::error::Error>>;

/// The time axis of the line charts: the window asked for, narrowed to the history it holds
/// (a week of backups is not drawn squeezed against the edge of a month), with a margin.
fn fitted(history: &[SourcePoint], (from, to): (i64, i64)) -> (i64, i64) {
    let first = history.first().map_or(from, |p| p.time.as_second());
    let margin = ((to - first) / 20).max(60);
    ((first - margin).max(from), to)
}

/// A time on an axis spanning `span` seconds: as precise as that span needs.
fn time_label(secs: i64, span: i64) -> String {
    let format = match span {
        s if s <= 600 => "%H:%M:%S",
        s if s <= 2 * DAY => "%H:%M",
        _ => "%m-%d %H:%M",
    };
    Timestamp::from_second(secs)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_default()
}

/// One line per source of `value` over time (successful backups only: a failed one has no
/// size and its duration says little).
fn lines(
    history: &[SourcePoint],
    (from, to): (i64, i64),
    title: &str,
    unit: &str,
    value: impl Fn(&SourcePoint) -> Option<f64>,
) -> Drawn {
    let mut series: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for p in history.iter().filter(|p| p.ok) {
        if let Some(v) = value(p) {
            series
                .entry(&p.source)
                .or_default()
                .push((p.time.as_second(), v));
        }
    }
    let top = series
        .values()
        .flatten()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(from..to, 0.0..(top * 1.1).max(1.0))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| time_label(*x, to - from))
            .y_desc(unit)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(3),
                )?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// A per-day strip per source: green when every backup that day succeeded, red when one
/// failed, amber when both happened, grey without a backup.
fn strip(history: &[SourcePoint], (from, to): (i64, i64)) -> Drawn {
    let first_day = from.div_euclid(DAY);
    let days = (to.div_euclid(DAY) - first_day + 1).max(1);
    let mut by_source: BTreeMap<&str, BTreeMap<i64, (u32, u32)>> = BTreeMap::new();
    for p in history {
        let day = p.time.as_second().div_euclid(DAY) - first_day;
        let counts = by_source
            .entry(&p.source)
            .or_default()
            .entry(day)
            .or_default();
        if p.ok {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    let rows = by_source.len().max(1) as i64;
    let mut svg = String::new();
    {
        let height = 70 + 26 * rows as u32;
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let names: Vec<&str> = by_source.keys().copied().collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("Backup results per day", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(24)
            .y_label_area_size(110)
            .build_cartesian_2d(0..days, (0..rows).into_segmented())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(6)
            .x_label_formatter(&|d| {
                time_label((first_day + d) * DAY, 3 * DAY)
                    .chars()
                    .take(5)
                    .collect()
            })
            .y_labels(rows as usize)
            .y_label_formatter(&|r| match r {
                SegmentValue::CenterOf(r) => names
                    .get((rows - 1 - r) as usize)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        let green = RGBColor(0x3a, 0xa7, 0x5a);
        let red = RGBColor(0xc8, 0x3a, 0x3a);
        let amber = RGBColor(0xe0, 0xa0, 0x20);
        let grey = RGBColor(0xe4, 0xe4, 0xe4);
        for (row, name) in names.iter().enumerate() {
            let y = rows - 1 - row as i64;
            let counts = &by_source[name];
            chart.draw_series((0..days).flat_map(|d| {
                let color = match counts.get(&d) {
                    Some((_, 0)) => green,
                    Some((0, _)) => red,
                    Some(_) => amber,
                    None => grey,
                };
                let cell = [
                    (d, SegmentValue::Exact(y)),
                    (d + 1, SegmentValue::Exact(y + 1)),
                ];
                // A white outline keeps neighbouring days and sources apart.
                [
                    Rectangle::new(cell.clone(), color.filled()),
                    Rectangle::new(cell, WHITE.stroke_width(2)),
                ]
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(source: &str, secs: i64, ok: bool, duration: f64) -> SourcePoint {
        SourcePoint {
            source: source.into(),
            time: Timestamp::from_second(secs).expect("a time"),
            ok,
            duration_secs: Some(duration),
            bytes: Some(1 << 20),
            bytes_added: Some(0),
        }
    }

    #[test]
    fn charts_name_their_sources_and_escape_them() {
        let day = 20_000 * DAY;
        let history = [
            point("<pg>", day + 100, true, 3.0),
            point("<pg>", day + DAY + 100, false, 1.0),
            point("redis", day + 200, true, 5.0),
        ];
        let svg = lines(
            &history,
            (day, day + 2 * DAY),
            "Backup duration",
            "seconds",
            |p| p.duration_secs,
        )
        .expect("drawn");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("&lt;pg&gt;") && !svg.contains("<pg>"));
        assert!(svg.contains("redis") && svg.contains("Backup duration"));
        let strip = strip(&history, (day, day + 2 * DAY)).expect("drawn");
        // A success day, a failure day for one source; a success day and a day without a
        // backup for the other.
        assert!(
            strip.contains("#3AA75A") || strip.contains("#3aa75a"),
            "{strip}"
        );
        assert!(strip.contains("#C83A3A") || strip.contains("#c83a3a"));
        assert!(strip.contains("#E4E4E4") || strip.contains("#e4e4e4"));
    }
}
