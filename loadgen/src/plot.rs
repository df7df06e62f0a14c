//! Latency-by-percentile plots as standalone SVG, in the style of
//! HdrHistogram's plotter: the x axis is `log10(1/(1-p))`, so 0%, 90%, 99%,
//! 99.9%, ... are evenly spaced and the tail gets the room it deserves.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Line colours, cycled.
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];
/// The x axis always reaches 99.999%; it goes further (up to 99.99999%) when
/// the data does.
const MIN_NINES: f64 = 5.0;
const MAX_NINES: f64 = 7.0;

/// Plots runs as latency (y, milliseconds) by percentile (x). Each run is a
/// name and its `(percentile, value)` points, the percentile as a fraction
/// (0.99 for p99) and the value in milliseconds; points at percentile 1
/// (the maximum) are drawn at the right edge. Returns a standalone SVG
/// document with one `<path>` per run and a legend.
pub fn plot_svg(runs: &[(String, Vec<(f64, f64)>)]) -> String {
    let axes = Axes::fit(runs);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Latency by percentile distribution</text>"#,
        LEFT + PLOT_WIDTH / 2.0
    );
    axes.write_grid(&mut svg);
    for (index, (name, points)) in runs.iter().enumerate() {
        axes.write_run(&mut svg, index, name, points);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The width of the plot area, inside the margins.
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
/// The height of the plot area, inside the margins.
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;

/// How far the axes reach: the x axis in nines of the percentile, the y
/// axis in milliseconds, with its step between grid lines.
#[derive(Debug, Clone, Copy)]
struct Axes {
    x_max: f64,
    y_max: f64,
    y_step: f64,
}

impl Axes {
    /// Axes that hold every finite point of `runs`.
    fn fit(runs: &[(String, Vec<(f64, f64)>)]) -> Axes {
        let data_nines = runs
            .iter()
            .flat_map(|(_, points)| points.iter().map(|&(p, _)| nines(p)))
            .filter(|x| x.is_finite())
            .fold(0.0f64, f64::max);
        let y_data = runs
            .iter()
            .flat_map(|(_, points)| points.iter().map(|&(_, v)| v))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let (y_max, y_step) = nice_axis(y_data);
        Axes {
            x_max: data_nines.ceil().clamp(MIN_NINES, MAX_NINES),
            y_max,
            y_step,
        }
    }

    /// The x coordinate of `percentile` (a fraction; 1 at the right edge).
    fn x_of(&self, percentile: f64) -> f64 {
        LEFT + nines(percentile).min(self.x_max) / self.x_max * PLOT_WIDTH
    }

    /// The y coordinate of `value` milliseconds.
    fn y_of(&self, value: f64) -> f64 {
        TOP + PLOT_HEIGHT - (value / self.y_max).clamp(0.0, 1.0) * PLOT_HEIGHT
    }

    /// The grid with its tick labels (0%, 90%, 99%, 99.9%, ... on x), the
    /// plot's frame and the axis titles.
    fn write_grid(&self, svg: &mut String) {
        for tick in 0..=(self.x_max as u32) {
            let x = LEFT + f64::from(tick) / self.x_max * PLOT_WIDTH;
            let label = match tick {
                0 => "0%".to_string(),
                n => format!("{}%", percentile_label(n)),
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
                TOP + PLOT_HEIGHT
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                TOP + PLOT_HEIGHT + 18.0
            );
        }
        let mut tick = 0.0;
        while tick <= self.y_max + self.y_step / 2.0 {
            let y = self.y_of(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##,
                LEFT + PLOT_WIDTH
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                format_number(tick)
            );
            tick += self.y_step;
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="#333333"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
            LEFT + PLOT_WIDTH / 2.0,
            HEIGHT - 16.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (ms)</text>"#,
            TOP + PLOT_HEIGHT / 2.0,
            TOP + PLOT_HEIGHT / 2.0
        );
    }

    /// Run number `index`: its line, then its legend entry.
    fn write_run(&self, svg: &mut String, index: usize, name: &str, points: &[(f64, f64)]) {
        let colour = COLOURS[index % COLOURS.len()];
        let mut d = String::new();
        for &(percentile, value) in points.iter().filter(|(_, v)| v.is_finite()) {
            let command = if d.is_empty() { 'M' } else { 'L' };
            let _ = write!(
                d,
                "{command}{:.2},{:.2} ",
                self.x_of(percentile),
                self.y_of(value)
            );
        }
        let _ = writeln!(
            svg,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            d.trim_end()
        );
        let y = TOP + 10.0 + 20.0 * index as f64;
        let x = LEFT + PLOT_WIDTH + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/>"#,
            x + 20.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 26.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// `log10(1/(1-p))`: 1 for p90, 2 for p99, ...; infinite at 1.
fn nines(percentile: f64) -> f64 {
    if percentile >= 1.0 {
        f64::INFINITY
    } else {
        (1.0 / (1.0 - percentile.max(0.0))).log10()
    }
}

/// "90", "99", "99.9", ... for `nines` nines.
fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0".to_string(),
        1 => "90".to_string(),
        n => format!(
            "99{}{}",
            if n > 2 { "." } else { "" },
            "9".repeat(n as usize - 2)
        ),
    }
}

/// An axis maximum and step: 1, 2 or 5 times a power of ten, about five
/// steps to cover `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 0.2);
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn format_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_axes() {
        assert_eq!(percentile_label(1), "90");
        assert_eq!(percentile_label(2), "99");
        assert_eq!(percentile_label(5), "99.999");
        assert_eq!(nice_axis(7.3), (8.0, 2.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(10.0), "10");
    }
}
