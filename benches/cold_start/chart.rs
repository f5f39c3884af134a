//! The PNG chart: p50 latency and throughput per language, client count and path.

use super::*;

/// Registers the TTF at `path` as the chart's `sans-serif` font.
pub(super) fn register_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the chart font {} (install fonts-dejavu-core or set BENCH_FONT)",
            path.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))
}

/// Grouped bars (one group per language and client count, one bar per path): p50 latency on
/// top, throughput below, both on log scales.
pub(super) fn chart(
    path: &Path,
    subtitle: &str,
    workloads: &[Workload],
    rows: &[Row],
) -> Result<()> {
    let mut groups = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for clients in CONCURRENCY {
            groups.push((wi, format!("{} ×{clients}", w.label), clients));
        }
    }
    let series = |value: fn(&Stats) -> f64| -> Vec<(Route, Vec<Option<f64>>)> {
        Route::ALL
            .into_iter()
            .map(|p| {
                let values = groups
                    .iter()
                    .map(|(wi, _, c)| stats_of(rows, *wi, p, *c).map(value))
                    .collect();
                (p, values)
            })
            .collect()
    };
    let labels: Vec<String> = groups.iter().map(|(_, l, _)| l.clone()).collect();
    let root = BitMapBackend::new(path, (1600, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (title, body) = root.split_vertically(64);
    title
        .draw(&Text::new(
            "wasmbox cold start: print / console.log / echo 'hello', fresh instance per execution",
            (800, 10),
            ("sans-serif", 22)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    title
        .draw(&Text::new(
            subtitle.to_string(),
            (800, 40),
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(80, 80, 80))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    let (top, bottom) = body.split_vertically(470);
    panel(
        &top,
        "p50 latency per execution (ms, log scale; lower is better)",
        &labels,
        &series(|s| s.p50.as_secs_f64() * 1000.0),
        true,
    )?;
    panel(
        &bottom,
        "throughput (executions/s, log scale; higher is better)",
        &labels,
        &series(|s| s.throughput),
        false,
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

pub(super) fn plot_err<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

pub(super) fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

pub(super) fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    labels: &[String],
    series: &[(Route, Vec<Option<f64>>)],
    legend: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| *v > 0.0)
        .collect();
    ensure!(!values.is_empty(), "nothing to plot");
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    // Just below a power of ten, so that the axis labels it.
    let lo = 10f64.powf(min.log10().floor()) * 0.999;
    // Room above the bars for the value labels (and the legend, on the panel that has it).
    let headroom = if legend { 3.0 } else { 1.5 };
    let hi = 10f64.powf((max * headroom).log10().ceil());
    let groups = labels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .margin_left(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..groups as f64 - 0.5, (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| tick(*v))
        .y_label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;

    // Group labels under the axis, drawn on the panel at the groups' pixel positions.
    let base = area.get_base_pixel();
    for (g, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64, lo));
        area.draw(&Text::new(
            label.clone(),
            (x - base.0, y - base.1 + 8),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    }

    let width = 0.84 / series.len() as f64;
    for (si, (path, values)) in series.iter().enumerate() {
        let color = path.color();
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            let v = (*v)?;
            let x0 = g as f64 - 0.42 + si as f64 * width;
            Some(Rectangle::new(
                [(x0 + 0.01, lo), (x0 + width - 0.01, v)],
                color.filled(),
            ))
        });
        let drawn = chart.draw_series(bars).map_err(plot_err)?;
        if legend {
            drawn.label(path.label()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
            });
        }
        chart
            .draw_series(values.iter().enumerate().filter_map(|(g, v)| {
                let v = (*v)?;
                let x = g as f64 - 0.42 + (si as f64 + 0.5) * width;
                let text = if v >= 100.0 {
                    format!("{v:.0}")
                } else if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                };
                Some(Text::new(
                    text,
                    (x, v),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))
            }))
            .map_err(plot_err)?;
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}
