//! Small hand-written SVG charts: line charts in a grid of panels, and grouped horizontal bars
//! on a logarithmic axis. No dependencies; the output is plain text a reviewer can diff.

use std::fmt::Write as _;

/// One line of a chart: a name, a colour, and `(x index, y)` points (`x` indexes the chart's
/// categories; missing points are skipped).
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub emphasis: bool,
    pub dashed: bool,
    pub points: Vec<(usize, f64)>,
}

/// One panel of a line chart.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound and tick step for `0..=max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let raw_step = max / 4.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| step * 4.0 >= max)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn format_tick(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Draws a legend that wraps at `width`; returns the baseline of its last row.
fn legend(
    out: &mut String,
    names: &[(&str, &'static str, bool)],
    x: f64,
    y: f64,
    width: f64,
) -> f64 {
    let mut cx = x;
    let mut cy = y;
    for (name, color, dashed) in names {
        let w = 34.0 + 7.0 * name.len() as f64;
        if cx + w > x + width {
            cx = x;
            cy += 18.0;
        }
        let dash = if *dashed {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/>",
            cx,
            cy - 4.0,
            cx + 20.0,
            cy - 4.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" {FONT}>{}</text>",
            cx + 25.0,
            cy,
            escape(name)
        );
        cx += w;
    }
    cy
}

/// Line charts, one panel per entry of `panels`, `columns` per row; x is categorical
/// (`x_labels`), y linear from 0.
pub fn line_panels(
    title: &str,
    subtitle: &str,
    panels: &[Panel],
    columns: usize,
    x_labels: &[String],
    x_title: &str,
    y_title: &str,
) -> String {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let panel_w = if columns == 1 { 640.0 } else { 320.0 };
    let panel_h = 230.0;
    let width = 20.0 + panel_w * columns as f64;
    let legend_names: Vec<(&str, &'static str, bool)> = {
        let mut names: Vec<(&str, &'static str, bool)> = Vec::new();
        for panel in panels {
            for series in &panel.series {
                if !names.iter().any(|(name, _, _)| *name == series.name) {
                    names.push((&series.name, series.color, series.dashed));
                }
            }
        }
        names
    };
    let mut legend_svg = String::new();
    let top = legend(&mut legend_svg, &legend_names, 10.0, 58.0, width - 20.0) + 20.0;
    let height = top + panel_h * rows as f64 + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\" {FONT}>{}</text>\n<text x=\"10\" y=\"37\" font-size=\"11\" fill=\"#555\" {FONT}>{}</text>",
        escape(title),
        escape(subtitle)
    );
    out.push_str(&legend_svg);
    for (index, panel) in panels.iter().enumerate() {
        let px = 10.0 + panel_w * (index % columns) as f64;
        let py = top + panel_h * (index / columns) as f64;
        let (left, right, upper, lower) = (
            px + 52.0,
            px + panel_w - 12.0,
            py + 22.0,
            py + panel_h - 40.0,
        );
        let max = panel
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.1))
            .fold(0.0, f64::max);
        let (y_max, step) = nice_axis(max);
        let x_at = |i: usize| {
            if x_labels.len() <= 1 {
                (left + right) / 2.0
            } else {
                left + 10.0 + (right - left - 20.0) * i as f64 / (x_labels.len() - 1) as f64
            }
        };
        let y_at = |v: f64| lower - (lower - upper) * v / y_max;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\" {FONT}>{}</text>",
            (left + right) / 2.0,
            py + 12.0,
            escape(&panel.title)
        );
        let mut tick = 0.0;
        while tick <= y_max + step / 2.0 {
            let y = y_at(tick);
            let _ = writeln!(
                out,
                "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" {FONT}>{}</text>",
                left - 4.0,
                y + 3.5,
                format_tick(tick)
            );
            tick += step;
        }
        let _ = writeln!(
            out,
            "<line x1=\"{left:.1}\" y1=\"{lower:.1}\" x2=\"{right:.1}\" y2=\"{lower:.1}\" stroke=\"#333\"/><line x1=\"{left:.1}\" y1=\"{upper:.1}\" x2=\"{left:.1}\" y2=\"{lower:.1}\" stroke=\"#333\"/>"
        );
        for (i, label) in x_labels.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" {FONT}>{}</text>",
                x_at(i),
                lower + 13.0,
                escape(label)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\" {FONT}>{}</text>",
            (left + right) / 2.0,
            lower + 27.0,
            escape(x_title)
        );
        let _ = writeln!(
            out,
            "<text transform=\"translate({:.1},{:.1}) rotate(-90)\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\" {FONT}>{}</text>",
            px + 12.0,
            (upper + lower) / 2.0,
            escape(y_title)
        );
        // Emphasised series last, so they are drawn on top.
        let mut order: Vec<&Series> = panel.series.iter().collect();
        order.sort_by_key(|series| series.emphasis);
        for series in order {
            let points: Vec<String> = series
                .points
                .iter()
                .map(|&(i, v)| format!("{:.1},{:.1}", x_at(i), y_at(v)))
                .collect();
            let width = if series.emphasis { 3.0 } else { 1.6 };
            let dash = if series.dashed {
                " stroke-dasharray=\"5,3\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\"{dash} points=\"{}\"><title>{}</title></polyline>",
                series.color,
                points.join(" "),
                escape(&series.name)
            );
            for &(i, v) in &series.points {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"><title>{}: {}</title></circle>",
                    x_at(i),
                    y_at(v),
                    if series.emphasis { 3.5 } else { 2.5 },
                    series.color,
                    escape(&series.name),
                    format_tick(v)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// One series of a bar chart: a value per category (`None`: not run).
pub struct Bars {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

/// Grouped horizontal bars on a log-10 axis, one group per category.
pub fn hbars_log(
    title: &str,
    subtitle: &str,
    categories: &[String],
    series: &[Bars],
    x_title: &str,
) -> String {
    let label_w = 230.0;
    let plot_w = 640.0;
    let bar_h = 5.0;
    let group_h = bar_h * series.len() as f64 + 8.0;
    let width = label_w + plot_w + 30.0;
    let names: Vec<(&str, &'static str, bool)> = series
        .iter()
        .map(|s| (s.name.as_str(), s.color, false))
        .collect();
    let mut legend_svg = String::new();
    let top = legend(&mut legend_svg, &names, 10.0, 58.0, width - 20.0) + 20.0;
    let height = top + group_h * categories.len() as f64 + 40.0;
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (min, max) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo_exp, hi_exp) = if min.is_finite() && max > 0.0 {
        (
            min.max(1e-3).log10().floor(),
            max.log10().ceil().max(min.log10().floor() + 1.0),
        )
    } else {
        (0.0, 1.0)
    };
    let x_at = |v: f64| label_w + plot_w * (v.max(1e-3).log10() - lo_exp) / (hi_exp - lo_exp);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\" {FONT}>{}</text>\n<text x=\"10\" y=\"37\" font-size=\"11\" fill=\"#555\" {FONT}>{}</text>",
        escape(title),
        escape(subtitle)
    );
    out.push_str(&legend_svg);
    let bottom = top + group_h * categories.len() as f64;
    let mut exp = lo_exp;
    while exp <= hi_exp + 0.5 {
        let v = 10f64.powf(exp);
        let x = x_at(v);
        let label = if v >= 1e6 {
            format!("{:.0} ms", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.0} µs", v / 1e3)
        } else if v >= 1.0 {
            format!("{v:.0} ns")
        } else {
            format!("{v} ns")
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" {FONT}>{label}</text>",
            bottom + 13.0
        );
        exp += 1.0;
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\" {FONT}>{}</text>",
        label_w + plot_w / 2.0,
        bottom + 30.0,
        escape(x_title)
    );
    for (c, category) in categories.iter().enumerate() {
        let gy = top + group_h * c as f64;
        if c % 2 == 1 {
            let _ = writeln!(
                out,
                "<rect x=\"0\" y=\"{gy:.1}\" width=\"{width:.0}\" height=\"{group_h:.1}\" fill=\"#f6f6f6\"/>"
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" {FONT}>{}</text>",
            label_w - 8.0,
            gy + group_h / 2.0 + 4.0,
            escape(category)
        );
        for (s, bars) in series.iter().enumerate() {
            if let Some(Some(v)) = bars.values.get(c) {
                let y = gy + 4.0 + bar_h * s as f64;
                let _ = writeln!(
                    out,
                    "<rect x=\"{label_w:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {:.1} ns/op</title></rect>",
                    (x_at(*v) - label_w).max(1.0),
                    bar_h - 0.6,
                    bars.color,
                    escape(category),
                    escape(&bars.name),
                    v
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "<line x1=\"{label_w:.1}\" y1=\"{top:.1}\" x2=\"{label_w:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
    );
    out.push_str("</svg>\n");
    out
}
