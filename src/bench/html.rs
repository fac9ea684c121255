//! `report.html`: the evaluation as one self-contained page. Charts are inline SVG
//! drawn here, styles are inline, and there is no script and no network asset, so
//! the page opens offline, in any browser, attached to an email or a CI artifact.
//!
//! Rates and latencies span several orders of magnitude from one broker to the next
//! (millions of messages per second in process, thousands over AMQP), so their
//! charts use a log scale; counts of duplicates and losses use a linear one.

use std::fmt::Write as _;

use super::Report;
use super::raw::Sample;

/// Width of a chart, its label column and its bar area, in pixels.
const WIDTH: f64 = 860.0;
const LABELS: f64 = 170.0;
const AREA: f64 = 560.0;
const BAR: f64 = 13.0;
const GAP: f64 = 12.0;
const TOP: f64 = 28.0;

/// One bar of each group.
struct Series {
    name: &'static str,
    color: &'static str,
}

/// A horizontal grouped bar chart: one group per broker, one bar per series.
struct Chart {
    id: &'static str,
    title: String,
    log: bool,
    series: Vec<Series>,
    /// Broker name and one value per series (None: not measured).
    rows: Vec<(String, Vec<Option<f64>>)>,
}

const BLUE: &str = "#2b6cb0";
const ORANGE: &str = "#dd6b20";
const GREEN: &str = "#2f855a";
const RED: &str = "#c53030";
const PURPLE: &str = "#6b46c1";
const GREY: &str = "#718096";

fn series(list: &[(&'static str, &'static str)]) -> Vec<Series> {
    list.iter()
        .map(|&(name, color)| Series { name, color })
        .collect()
}

/// The page.
pub fn render(report: &Report) -> String {
    let mut charts = Vec::new();
    let raw: Vec<_> = report
        .brokers
        .iter()
        .filter_map(|b| b.raw.as_ref().map(|r| (b.broker.clone(), r)))
        .collect();
    let games: Vec<_> = report
        .brokers
        .iter()
        .filter_map(|b| b.game.as_ref().map(|g| (b.broker.clone(), g)))
        .collect();
    if !raw.is_empty() {
        charts.push(Chart {
            id: "raw-throughput",
            title: "Raw messaging: throughput (messages/s, log scale)".into(),
            log: true,
            series: series(&[("published/s", BLUE), ("consumed/s", ORANGE)]),
            rows: raw
                .iter()
                .map(|(n, r)| {
                    (
                        n.clone(),
                        vec![Some(r.publish_per_s), Some(r.consume_per_s)],
                    )
                })
                .collect(),
        });
        charts.push(Chart {
            id: "raw-latency",
            title: "Raw messaging: end-to-end latency (ms, log scale)".into(),
            log: true,
            series: latency_series(),
            rows: raw
                .iter()
                .map(|(n, r)| (n.clone(), latency_values(&r.latency)))
                .collect(),
        });
    }
    let searched: Vec<_> = report
        .brokers
        .iter()
        .filter_map(|b| b.sustainable.as_ref().map(|s| (b, s)))
        .collect();
    if !searched.is_empty() {
        charts.push(Chart {
            id: "sustainable",
            title: "Highest sustainable rate, beside the throughput run's consumed/s \
                    (messages/s, log scale)"
                .into(),
            log: true,
            series: series(&[("sustainable", GREEN), ("throughput run", ORANGE)]),
            rows: searched
                .iter()
                .map(|(b, s)| {
                    (
                        b.broker.clone(),
                        vec![s.rate_per_s, b.raw.as_ref().map(|r| r.consume_per_s)],
                    )
                })
                .collect(),
        });
    }
    let fixed: Vec<_> = report
        .brokers
        .iter()
        .flat_map(|b| b.latency.iter().map(move |run| (b, run)))
        .collect();
    if !fixed.is_empty() {
        charts.push(Chart {
            id: "fixed-rate-latency",
            title: "Latency at fixed rates, from the intended send time (ms, log scale)".into(),
            log: true,
            series: series(&[
                ("p50", GREEN),
                ("p99", BLUE),
                ("p99.9", ORANGE),
                ("p99.99", PURPLE),
                ("max", RED),
            ]),
            rows: fixed
                .iter()
                .map(|(b, run)| {
                    let l = &run.result.latency;
                    (
                        format!("{} at {}/s", b.broker, human(run.rate)),
                        vec![
                            Some(l.p50_ms),
                            Some(l.p99_ms),
                            Some(l.p99_9_ms),
                            Some(l.p99_99_ms),
                            Some(l.max_ms),
                        ],
                    )
                })
                .collect(),
        });
    }
    if !games.is_empty() {
        charts.push(Chart {
            id: "game-throughput",
            title: "Game pipeline: events published per second (log scale)".into(),
            log: true,
            series: series(&[("events/s", GREEN)]),
            rows: games
                .iter()
                .map(|(n, g)| (n.clone(), vec![Some(g.events_per_s)]))
                .collect(),
        });
        charts.push(Chart {
            id: "game-latency",
            title: "Game pipeline: game end to durable Parquet (ms, log scale)".into(),
            log: true,
            series: latency_series(),
            rows: games
                .iter()
                .map(|(n, g)| (n.clone(), latency_values(&g.completion_to_parquet)))
                .collect(),
        });
    }
    if !raw.is_empty() || !games.is_empty() {
        charts.push(Chart {
            id: "losses",
            title: "Duplicates and losses (count)".into(),
            log: false,
            series: series(&[
                ("raw duplicates", PURPLE),
                ("raw lost", RED),
                ("duplicate games", ORANGE),
                ("missing games", GREY),
            ]),
            rows: report
                .brokers
                .iter()
                .filter(|b| b.raw.is_some() || b.game.is_some())
                .map(|b| {
                    let r = b.raw.as_ref();
                    let g = b.game.as_ref();
                    (
                        b.broker.clone(),
                        vec![
                            r.map(|r| r.duplicates as f64),
                            r.map(|r| r.lost as f64),
                            g.map(|g| g.duplicate_games as f64),
                            g.map(|g| g.missing_games as f64),
                        ],
                    )
                })
                .collect(),
        });
    }

    let mut timelines = Vec::new();
    if !raw.is_empty() {
        let runs: Vec<_> = raw
            .iter()
            .map(|(n, r)| (n.as_str(), r.series.as_slice()))
            .collect();
        timelines.push(Timeline::rate(
            "raw-rate-over-time",
            "Throughput run: messages consumed per second over the run".into(),
            &runs,
        ));
        timelines.push(Timeline::backlog(
            "raw-backlog-over-time",
            "Throughput run: backlog (published, not yet consumed) over the run".into(),
            &runs,
        ));
    }
    // The heaviest fixed-rate run of each broker: does the broker keep pace?
    let heaviest: Vec<_> = report
        .brokers
        .iter()
        .filter_map(|b| {
            b.latency
                .iter()
                .max_by(|x, y| x.rate.total_cmp(&y.rate))
                .map(|run| (b.broker.as_str(), run.result.series.as_slice()))
        })
        .collect();
    if !heaviest.is_empty() {
        timelines.push(Timeline::backlog(
            "fixed-rate-backlog-over-time",
            "Heaviest fixed-rate run: backlog over the run".into(),
            &heaviest,
        ));
    }

    // The faults run: the dip when the consumer died, and the catching up.
    let faulted: Vec<_> = report
        .brokers
        .iter()
        .filter_map(|b| b.faults.as_ref().map(|f| (b.broker.as_str(), f)))
        .collect();
    if !faulted.is_empty() {
        let runs: Vec<_> = faulted
            .iter()
            .map(|(name, f)| (*name, f.series.as_slice()))
            .collect();
        timelines.push(Timeline::rate(
            "faults-rate-over-time",
            "Faults run: messages consumed per second, the consumer killed and replaced".into(),
            &runs,
        ));
    }

    let mut page = String::from(HEAD);
    page.push_str("<h1>superhero bench</h1>\n");
    page.push_str(&environment(&report.environment));
    page.push_str("<section id=\"recommendation\"><h2>Recommendation</h2><ul>\n");
    for r in &report.recommendation {
        let _ = writeln!(
            page,
            "<li><strong>{}</strong>: <span class=\"broker\">{}</span> ({})</li>",
            escape(r.criterion),
            escape(r.broker.as_deref().unwrap_or("none")),
            escape(&r.why)
        );
    }
    page.push_str("</ul></section>\n");
    page.push_str("<section id=\"verdicts\"><h2>Verdicts</h2><ul>\n");
    for line in report.brokers.iter().flat_map(|b| &b.verdict) {
        let _ = writeln!(page, "<li>{}</li>", escape(line));
    }
    page.push_str("</ul></section>\n<section id=\"charts\"><h2>Charts</h2>\n");
    for chart in &charts {
        page.push_str(&draw(chart));
    }
    for timeline in &timelines {
        page.push_str(&timeline.draw());
    }
    page.push_str("</section>\n<section id=\"tables\"><h2>Tables</h2>\n");
    page.push_str(&markdown_tables(&report.markdown()));
    page.push_str("</section>\n</body>\n</html>\n");
    page
}

fn latency_series() -> Vec<Series> {
    series(&[("p50", GREEN), ("p95", BLUE), ("p99", ORANGE), ("max", RED)])
}

fn latency_values(l: &crate::latency::Latency) -> Vec<Option<f64>> {
    vec![
        Some(l.p50_ms),
        Some(l.p95_ms),
        Some(l.p99_ms),
        Some(l.max_ms),
    ]
}

/// Where a value falls on the axis, from 0 to 1.
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
}

impl Scale {
    fn new(log: bool, values: impl Iterator<Item = f64> + Clone) -> Self {
        let max = values.clone().fold(0.0_f64, f64::max);
        if log {
            let min = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
            if !min.is_finite() {
                return Self {
                    log,
                    lo: 0.0,
                    hi: 1.0,
                };
            }
            let lo = min.log10().floor();
            let hi = max.log10().ceil().max(lo + 1.0);
            Self { log, lo, hi }
        } else {
            Self {
                log,
                lo: 0.0,
                hi: nice_ceiling(max),
            }
        }
    }

    fn at(&self, v: f64) -> f64 {
        if self.log {
            if v <= 0.0 {
                return 0.0;
            }
            ((v.log10() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        } else {
            (v / self.hi).clamp(0.0, 1.0)
        }
    }

    /// Axis ticks: each power of ten, or five even steps.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (lo, hi) = (self.lo as i32, self.hi as i32);
            (lo..=hi).map(|p| 10f64.powi(p)).collect()
        } else {
            (0..=5).map(|i| self.hi * i as f64 / 5.0).collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `v` (and at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// 8.5M, 382k, 9.5k, 1k, 12, 1.3, 0.41.
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6).replace(".0M", "M")
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3).replace(".0k", "k")
    } else if a >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn draw(chart: &Chart) -> String {
    let values = chart
        .rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied());
    let scale = Scale::new(chart.log, values);
    let group = chart.series.len() as f64 * BAR + GAP;
    let legend_y = TOP + chart.rows.len() as f64 * group + 10.0;
    let height = legend_y + 24.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<figure class=\"chart\" id=\"{}\"><figcaption>{}</figcaption>\n\
         <svg class=\"chart-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        chart.id,
        escape(&chart.title),
        escape(&chart.title)
    );
    for tick in scale.ticks() {
        let x = LABELS + scale.at(tick) * AREA;
        let _ = writeln!(
            svg,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            TOP - 4.0,
            legend_y - 6.0,
            TOP - 10.0,
            human(tick)
        );
    }
    for (i, (broker, values)) in chart.rows.iter().enumerate() {
        let y0 = TOP + i as f64 * group;
        let _ = writeln!(
            svg,
            "<text class=\"label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABELS - 8.0,
            y0 + chart.series.len() as f64 * BAR / 2.0 + 4.0,
            escape(&shorten(broker, 24))
        );
        for (j, (s, v)) in chart.series.iter().zip(values).enumerate() {
            let y = y0 + j as f64 * BAR;
            let Some(v) = v else {
                let _ = writeln!(
                    svg,
                    "<text class=\"value\" x=\"{}\" y=\"{:.1}\">not measured</text>",
                    LABELS + 4.0,
                    y + BAR - 3.0
                );
                continue;
            };
            // A measured value never disappears: at least a sliver of a bar.
            let w = if *v > 0.0 {
                (scale.at(*v) * AREA).max(2.0)
            } else {
                0.0
            };
            let _ = writeln!(
                svg,
                "<rect class=\"bar\" data-series=\"{}\" x=\"{LABELS}\" y=\"{y:.1}\" width=\"{w:.1}\" \
                 height=\"{}\" fill=\"{}\"><title>{}: {} {}</title></rect>\
                 <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                escape(s.name),
                BAR - 2.0,
                s.color,
                escape(broker),
                escape(s.name),
                human(*v),
                LABELS + w + 4.0,
                y + BAR - 3.0,
                human(*v)
            );
        }
    }
    let mut x = LABELS;
    for s in &chart.series {
        let _ = writeln!(
            svg,
            "<rect class=\"key\" x=\"{x:.1}\" y=\"{legend_y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            s.color,
            x + 16.0,
            legend_y + 10.0,
            escape(s.name)
        );
        x += 28.0 + 7.0 * s.name.len() as f64;
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// The machine and the brokers the numbers come from.
fn environment(env: &super::Environment) -> String {
    let mut html = String::from("<section id=\"environment\"><h2>Environment</h2><dl>\n");
    for (term, value) in env.lines() {
        let _ = writeln!(
            html,
            "<dt>{}</dt><dd>{}</dd>",
            escape(&term),
            escape(&value)
        );
    }
    html.push_str("</dl></section>\n");
    html
}

/// Colours told apart for one line per broker.
const PALETTE: [&str; 8] = [BLUE, ORANGE, GREEN, RED, PURPLE, GREY, "#b7791f", "#00838f"];

/// A line chart over a run's time: one line per broker, linear axes.
struct Timeline {
    id: &'static str,
    title: String,
    y_label: &'static str,
    lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// Samples a rate is taken over: half a second at the raw run's sampling.
const RATE_SPAN: usize = 5;

impl Timeline {
    fn rate(id: &'static str, title: String, runs: &[(&str, &[Sample])]) -> Self {
        let lines = runs
            .iter()
            .map(|(name, series)| {
                // A short run's rate over what samples it has.
                let span = RATE_SPAN.min(series.len().saturating_sub(1)).max(1);
                let points = series
                    .windows(span + 1)
                    .filter_map(|w| {
                        let (a, b) = (w[0], w[span]);
                        let dt = b.t_s - a.t_s;
                        (dt > 0.0).then(|| (b.t_s, (b.consumed - a.consumed) as f64 / dt))
                    })
                    .collect();
                (name.to_string(), points)
            })
            .collect();
        Self {
            id,
            title,
            y_label: "msg/s",
            lines,
        }
    }

    fn backlog(id: &'static str, title: String, runs: &[(&str, &[Sample])]) -> Self {
        let lines = runs
            .iter()
            .map(|(name, series)| {
                let points = series
                    .iter()
                    .map(|s| (s.t_s, s.published.saturating_sub(s.consumed) as f64))
                    .collect();
                (name.to_string(), points)
            })
            .collect();
        Self {
            id,
            title,
            y_label: "messages",
            lines,
        }
    }

    fn draw(&self) -> String {
        const LEFT: f64 = 70.0;
        const KEY_W: f64 = 190.0;
        const KEYS_PER_ROW: usize = 4;
        const PLOT_W: f64 = WIDTH - LEFT - 20.0;
        const PLOT_H: f64 = 180.0;
        let key_rows = self.lines.len().div_ceil(KEYS_PER_ROW).max(1);
        let legend_y = TOP + PLOT_H + 32.0;
        let height = legend_y + key_rows as f64 * 18.0 + 6.0;
        let points = || self.lines.iter().flat_map(|(_, p)| p.iter());
        let x_max = nice_ceiling(points().map(|p| p.0).fold(0.0, f64::max));
        let y = Scale::new(false, points().map(|p| p.1));
        let x = |t: f64| LEFT + (t / x_max).clamp(0.0, 1.0) * PLOT_W;
        let yy = |v: f64| TOP + (1.0 - y.at(v)) * PLOT_H;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<figure class=\"chart timeline\" id=\"{}\"><figcaption>{}</figcaption>\n\
             <svg class=\"chart-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
             height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
            self.id,
            escape(&self.title),
            escape(&self.title)
        );
        for tick in y.ticks() {
            let _ = writeln!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\"/>\
                 <text class=\"tick\" x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
                yy(tick),
                LEFT + PLOT_W,
                LEFT - 6.0,
                yy(tick) + 4.0,
                human(tick)
            );
        }
        for i in 0..=5 {
            let t = x_max * i as f64 / 5.0;
            let _ = writeln!(
                svg,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} s</text>",
                x(t),
                TOP + PLOT_H + 16.0,
                human(t)
            );
        }
        let _ = writeln!(
            svg,
            "<text class=\"tick\" x=\"{LEFT}\" y=\"{:.1}\">{}</text>",
            TOP - 10.0,
            self.y_label
        );
        for (i, (name, points)) in self.lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let path: Vec<String> = points
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), yy(v)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline class=\"line\" data-broker=\"{}\" fill=\"none\" stroke=\"{color}\" \
                 stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
                escape(name),
                path.join(" "),
                escape(name)
            );
        }
        for (i, (name, _)) in self.lines.iter().enumerate() {
            let name = shorten(name, 24);
            let lx = LEFT + (i % KEYS_PER_ROW) as f64 * KEY_W;
            let ly = legend_y + (i / KEYS_PER_ROW) as f64 * 18.0;
            let _ = writeln!(
                svg,
                "<rect class=\"key\" x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                PALETTE[i % PALETTE.len()],
                lx + 16.0,
                ly + 10.0,
                escape(&name)
            );
        }
        svg.push_str("</svg></figure>\n");
        svg
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

/// The report's Markdown as HTML: its paragraphs, lists and pipe tables (the only
/// constructs [`Report::markdown`] writes).
fn markdown_tables(md: &str) -> String {
    let mut html = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('|') {
            html.push_str("<table>\n");
            let header = cells(line);
            html.push_str("<tr>");
            for c in &header {
                let _ = write!(html, "<th>{}</th>", escape(c));
            }
            html.push_str("</tr>\n");
            // The alignment row: right-aligned columns hold numbers.
            let numeric: Vec<bool> = match lines.next_if(|l| l.starts_with("|-")) {
                Some(l) => cells(l).iter().map(|c| c.ends_with(':')).collect(),
                None => Vec::new(),
            };
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                html.push_str("<tr>");
                for (i, c) in cells(row).iter().enumerate() {
                    let class = if numeric.get(i).copied().unwrap_or(false) {
                        " class=\"num\""
                    } else {
                        ""
                    };
                    let _ = write!(html, "<td{class}>{}</td>", escape(c));
                }
                html.push_str("</tr>\n");
            }
            html.push_str("</table>\n");
        } else if line.starts_with("Environment:") || line.starts_with("Recommendation:") {
            // The page shows them in sections of their own.
            while lines
                .next_if(|l| l.trim().is_empty() || l.starts_with("- "))
                .is_some()
            {}
        } else if line.starts_with("Verdicts:") {
            // The verdicts open the page already.
            while lines.next_if(|l| !l.starts_with('|')).is_some() {}
        } else if !line.trim().is_empty() {
            let _ = writeln!(html, "<p>{}</p>", escape(line));
        }
    }
    html
}

fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>superhero bench</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #1a202c; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.5rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #e2e8f0; }
figure.chart { margin: 1.5rem 0; }
figcaption { font-weight: 600; margin-bottom: 0.3rem; }
svg.chart-svg { max-width: 100%; height: auto; font-size: 11px; }
svg .grid { stroke: #e2e8f0; stroke-width: 1; }
svg .tick, svg .value, svg .legend { fill: #4a5568; }
svg .label { fill: #1a202c; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 12px; }
th, td { border: 1px solid #e2e8f0; padding: 0.25rem 0.5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f7fafc; }
</style>
</head>
<body>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_place_values_between_their_ends() {
        let s = Scale::new(true, [9_500.0, 8_500_000.0].into_iter());
        assert_eq!((s.lo, s.hi), (3.0, 7.0));
        assert!(s.at(9_500.0) > 0.2 && s.at(9_500.0) < 0.3);
        assert_eq!(s.at(10_000_000.0), 1.0);
        assert_eq!(s.at(0.0), 0.0);
        assert_eq!(s.ticks(), vec![1e3, 1e4, 1e5, 1e6, 1e7]);
        let s = Scale::new(false, [0.0, 1500.0].into_iter());
        assert_eq!(s.hi, 2000.0);
        assert_eq!(s.at(1000.0), 0.5);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(40.0), 50.0);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(human(8_501_348.0), "8.5M");
        assert_eq!(human(381_994.0), "382k");
        assert_eq!(human(9_533.0), "9.5k");
        assert_eq!(human(1_000.0), "1k");
        assert_eq!(human(1e7), "10M");
        assert_eq!(human(12.3), "12");
        assert_eq!(human(1.26), "1.3");
        assert_eq!(human(0.412), "0.41");
        assert_eq!(human(0.0), "0");
    }

    #[test]
    fn tables_become_html_and_text_is_escaped() {
        let html = markdown_tables(
            "Environment:\n\n- host: h\n\nTitle <x>\n\n| a | b |\n|---|---:|\n| m&n | 5 |\n\nVerdicts:\n\n- skip me\n",
        );
        assert!(html.contains("<p>Title &lt;x&gt;</p>"), "{html}");
        assert!(html.contains("<th>a</th><th>b</th>"), "{html}");
        assert!(
            html.contains("<td>m&amp;n</td><td class=\"num\">5</td>"),
            "{html}"
        );
        assert!(!html.contains("skip me"), "{html}");
        assert!(!html.contains("host"), "{html}");
    }
}
