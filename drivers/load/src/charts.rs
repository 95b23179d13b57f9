//! Charts of one or more runs, each in PNG and SVG (plotters): throughput,
//! TTFT and ITL against concurrency, and latency against throughput.
//! Concurrency is drawn on a log2 axis. Text needs a TrueType font: the
//! pinned one (`[tools.chart-font]`, which `cargo xtask setup` provisions),
//! or the one `TESTBED_CHART_FONT` names.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::BenchResults;
use crate::stats::{PointResult, Summary};

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 600);

/// Registers the font once; an error names what to install.
fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = testbed_harness::tool::locate("chart-font")
            .map_err(|e| format!("no TrueType font for the charts: {e:#}"))?
            .path;
        let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable font", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// One line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// One chart.
struct Chart {
    file: &'static str,
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    /// X is a concurrency: drawn as log2, labelled as the concurrency.
    x_log2: bool,
    series: Vec<Series>,
    /// A right-hand axis and its lines.
    secondary: Option<(&'static str, Vec<Series>)>,
}

fn label(runs: &[BenchResults], run: &BenchResults, what: &str) -> String {
    if runs.len() == 1 {
        what.to_owned()
    } else {
        format!("{} {what}", run.run_id)
    }
}

/// A point's place on the x axis: its offered rate (open loop), or its
/// concurrency as log2 (closed loop).
fn x_of(p: &PointResult) -> f64 {
    match p.offered_rate {
        Some(rate) => rate,
        None => (p.concurrency.max(1) as f64).log2(),
    }
}

fn by_concurrency(run: &BenchResults, f: impl Fn(&PointResult) -> f64) -> Vec<(f64, f64)> {
    run.points
        .iter()
        .filter(|p| p.completed > 0)
        .map(|p| (x_of(p), f(p)))
        .collect()
}

/// The x axis of `runs`' load charts: (what it is, whether log2).
fn load_axis(runs: &[BenchResults]) -> (&'static str, &'static str, bool) {
    let open = runs
        .iter()
        .flat_map(|r| &r.points)
        .any(|p| p.offered_rate.is_some());
    if open {
        (
            "offered rate",
            "offered rate (requests/s, Poisson arrivals)",
            false,
        )
    } else {
        ("concurrency", "concurrency (requests in flight)", true)
    }
}

fn latency_series(runs: &[BenchResults], pick: fn(&PointResult) -> &Summary) -> Vec<Series> {
    let mut out = Vec::new();
    for run in runs {
        for (name, stat) in [("p50", 0), ("p90", 1), ("p99", 2)] {
            out.push(Series {
                label: label(runs, run, name),
                points: by_concurrency(run, |p| {
                    let s = pick(p);
                    [s.p50, s.p90, s.p99][stat]
                }),
            });
        }
    }
    out
}

fn charts(runs: &[BenchResults]) -> Vec<Chart> {
    let (x_name, x_desc, x_log2) = load_axis(runs);
    let subtitle = runs
        .first()
        .map(|r| {
            format!(
                " — {} in / {} out tokens, {}",
                r.spec.input_tokens, r.spec.output_tokens, r.topology
            )
        })
        .unwrap_or_default();
    let latency_chart = |file, what, y_desc, pick| Chart {
        file,
        title: format!("{what} vs {x_name}{subtitle}"),
        x_desc,
        y_desc,
        x_log2,
        series: latency_series(runs, pick),
        secondary: None,
    };
    vec![
        Chart {
            file: "throughput",
            title: format!("Throughput vs {x_name}{subtitle}"),
            x_desc,
            y_desc: "output tokens/s",
            x_log2,
            series: runs
                .iter()
                .map(|r| Series {
                    label: label(runs, r, "output tokens/s (left)"),
                    points: by_concurrency(r, |p| p.output_token_rate),
                })
                .collect(),
            secondary: Some((
                "requests/s",
                runs.iter()
                    .map(|r| Series {
                        label: label(runs, r, "requests/s (right)"),
                        points: by_concurrency(r, |p| p.request_rate),
                    })
                    .collect(),
            )),
        },
        latency_chart("ttft", "Time to first token", "TTFT (ms)", |p| &p.ttft_ms),
        latency_chart("itl", "Inter-token latency", "ITL (ms)", |p| &p.itl_ms),
        Chart {
            file: "latency_vs_throughput",
            title: format!("Latency vs throughput{subtitle}"),
            x_desc: "output tokens/s",
            y_desc: "end-to-end latency (ms)",
            x_log2: false,
            series: runs
                .iter()
                .flat_map(|r| {
                    [("e2e p50", 0), ("e2e p99", 1)].map(|(name, stat)| Series {
                        label: label(runs, r, name),
                        points: r
                            .points
                            .iter()
                            .filter(|p| p.completed > 0)
                            .map(|p| (p.output_token_rate, [p.e2e_ms.p50, p.e2e_ms.p99][stat]))
                            .collect(),
                    })
                })
                .collect(),
            secondary: None,
        },
    ]
}

/// Writes every chart of `runs` (one run, or several overlaid) as PNG and
/// SVG into `dir`; returns the files.
pub fn write_charts(runs: &[BenchResults], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for chart in charts(runs) {
        let png = dir.join(format!("{}.png", chart.file));
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            draw(&root, &chart).with_context(|| format!("draw {}", png.display()))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("write {}: {e}", png.display()))?;
        }
        let svg = dir.join(format!("{}.svg", chart.file));
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            draw(&root, &chart).with_context(|| format!("draw {}", svg.display()))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("write {}: {e}", svg.display()))?;
        }
        files.push(png);
        files.push(svg);
    }
    Ok(files)
}

fn range(values: impl Iterator<Item = f64>, log2: bool) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if log2 {
        (lo - 0.25)..(hi + 0.25)
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-3);
        (lo - pad).max(0.0)..(hi + pad)
    }
}

/// A value for an axis label: no decimals for large numbers.
fn y_fmt(v: &f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

type Plane<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e}");
    root.fill(&WHITE).map_err(err)?;
    let all = || chart.series.iter().flat_map(|s| s.points.iter());
    let x = range(
        all().map(|p| p.0).chain(
            chart
                .secondary
                .iter()
                .flat_map(|(_, s)| s.iter().flat_map(|s| s.points.iter().map(|p| p.0))),
        ),
        chart.x_log2,
    );
    let y_top = |pts: &mut dyn Iterator<Item = f64>| pts.fold(0.0f64, f64::max) * 1.15 + 1e-3;
    let y = 0.0..y_top(&mut all().map(|p| p.1));
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72);
    if chart.secondary.is_some() {
        builder.right_y_label_area_size(72);
    }
    let ctx = builder.build_cartesian_2d(x.clone(), y).map_err(err)?;
    let mut color = 0usize;
    match &chart.secondary {
        None => {
            let mut ctx = ctx;
            primary(&mut ctx, chart, &mut color).map_err(err)?;
            legend(&mut ctx).map_err(err)?;
        }
        Some((desc, series)) => {
            // The secondary coordinates take the right label area: set them
            // before the primary mesh, which would otherwise label it too.
            let y2 = 0.0..y_top(&mut series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
            let mut ctx = ctx.set_secondary_coord(x, y2);
            primary(&mut ctx, chart, &mut color).map_err(err)?;
            ctx.configure_secondary_axes()
                .y_desc(*desc)
                .y_label_formatter(&y_fmt)
                .axis_desc_style(("sans-serif", 16))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            for s in series {
                let c = Palette99::pick(color).to_rgba();
                color += 1;
                ctx.draw_secondary_series(LineSeries::new(
                    s.points.iter().copied(),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(&s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
                ctx.draw_secondary_series(
                    s.points
                        .iter()
                        .map(|&p| TriangleMarker::new(p, 5, c.filled())),
                )
                .map_err(err)?;
            }
            legend(&mut ctx).map_err(err)?;
        }
    }
    Ok(())
}

/// The mesh, the axes and the left-hand series.
fn primary<'a, DB: DrawingBackend + 'a>(
    ctx: &mut Plane<'a, DB>,
    chart: &Chart,
    color: &mut usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let log2 = chart.x_log2;
    let x_fmt = move |v: &f64| {
        if !log2 {
            y_fmt(v)
        } else if (v - v.round()).abs() < 1e-6 {
            format!("{}", 2f64.powf(v.round()))
        } else {
            String::new()
        }
    };
    ctx.configure_mesh()
        .x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()?;
    for s in &chart.series {
        let c = Palette99::pick(*color).to_rgba();
        *color += 1;
        ctx.draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(
    ctx: &mut Plane<'a, DB>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::synthetic;

    #[test]
    fn charts_are_written_as_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("testbed-load-charts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = synthetic("a", 1.0).write(&dir).unwrap();
        assert_eq!(files.len(), 2 + 8, "{files:?}");
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            match f.extension().and_then(|e| e.to_str()) {
                Some("png") => assert_eq!(&bytes[..4], b"\x89PNG"),
                Some("svg") => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
                _ => {}
            }
        }
        let back = BenchResults::read(&dir).unwrap();
        let orig = synthetic("a", 1.0);
        assert_eq!(back.spec, orig.spec);
        assert_eq!(back.points.len(), orig.points.len());
        for (b, o) in back.points.iter().zip(&orig.points) {
            assert_eq!((b.concurrency, b.completed), (o.concurrency, o.completed));
            assert!((b.itl_ms.mean - o.itl_ms.mean).abs() < 1e-9);
        }
        // An overlay labels each run's lines with its run id, in every chart.
        let overlay = dir.join("overlay");
        let files =
            write_charts(&[synthetic("old", 1.0), synthetic("new", 1.3)], &overlay).unwrap();
        let svgs: Vec<_> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "svg"))
            .collect();
        assert_eq!(svgs.len(), 4, "{files:?}");
        for svg in svgs {
            let text = std::fs::read_to_string(svg).unwrap();
            for run in ["old", "new"] {
                assert!(
                    text.contains(&format!("{run} ")),
                    "{} labels run {run}",
                    svg.display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
