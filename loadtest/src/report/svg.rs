//! A latency-by-percentile plot as a self-contained SVG file: latency (ms) up, percentile
//! right on a log scale (0%, 90%, 99%, 99.9%, ...), so the tail gets as much room as the
//! median. Written by hand: no plotting crate.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::hgrm::TICKS_PER_HALF_DISTANCE;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 70.0;

/// Line colours of successive series.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Percentile "nines" shown at most (99.99999%).
const MAX_NINES: f64 = 7.0;

/// One line of the plot.
pub struct Series<'a> {
    /// Legend text.
    pub label: String,
    /// Values in nanoseconds.
    pub histogram: &'a Histogram<u64>,
}

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The x position of a quantile: the number of nines, log10(1 / (1 - q)).
fn nines(quantile: f64) -> f64 {
    if quantile >= 1.0 {
        return f64::INFINITY;
    }
    (1.0 / (1.0 - quantile)).log10()
}

/// Label of a whole number of nines: 0%, 90%, 99%, 99.9%, ...
fn percent_label(n: u32) -> String {
    match n {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// The smallest "nice" number (1, 2 or 5 times a power of ten) at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * power >= value {
            return step * power;
        }
    }
    10.0 * power
}

/// Points (nines, ms) of a histogram; the 100% point is placed at `x_max`.
fn points(histogram: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| {
            let x = nines(step.quantile_iterated_to()).min(x_max);
            (x, step.value_iterated_to() as f64 / 1e6)
        })
        .collect()
}

/// The plot of `series` under a title and subtitle.
pub fn render(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    let deepest = series
        .iter()
        .filter(|s| !s.histogram.is_empty())
        .map(|s| (s.histogram.len() as f64).log10().ceil())
        .fold(2.0, f64::max);
    let x_max = deepest.clamp(2.0, MAX_NINES);
    let y_top = series
        .iter()
        .filter(|s| !s.histogram.is_empty())
        .map(|s| s.histogram.max() as f64 / 1e6)
        .fold(0.0, f64::max);
    let y_max = nice_ceiling(y_top * 1.05);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"28\" font-size=\"16\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
        WIDTH / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"48\" fill=\"#555\" text-anchor=\"middle\">{}</text>",
        WIDTH / 2.0,
        escape(subtitle)
    );
    for n in 0..=(x_max as u32) {
        let x = sx(f64::from(n));
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h + 18.0,
            percent_label(n)
        );
    }
    let y_step = y_max / 5.0;
    for i in 0..=5 {
        let value = y_step * f64::from(i);
        let y = sy(value);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 8.0,
            y + 4.0,
            trim_number(value)
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">latency (ms)</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> = points(line.histogram, x_max)
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        let legend_y = TOP + 16.0 + 18.0 * index as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
            LEFT + 12.0,
            LEFT + 36.0
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            LEFT + 42.0,
            legend_y + 4.0,
            escape(&line.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A tick value without trailing zeros.
fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_latency_histogram;

    #[test]
    fn nines_and_labels() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!(nines(1.0).is_infinite());
        assert_eq!(percent_label(0), "0%");
        assert_eq!(percent_label(1), "90%");
        assert_eq!(percent_label(4), "99.99%");
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(0.42), 0.5);
        assert_eq!(nice_ceiling(2.1), 2.5);
        assert_eq!(trim_number(2.5), "2.5");
        assert_eq!(trim_number(10.0), "10");
    }

    #[test]
    fn plot_is_well_formed_svg_with_one_line_per_series() {
        let mut latency = new_latency_histogram();
        for micros in 1..=10_000u64 {
            latency.record(micros * 100).unwrap();
        }
        let empty = new_latency_histogram();
        let svg = render(
            "fanout <QoS 1>",
            "100 subscribers",
            &[
                Series {
                    label: "publish → deliver".into(),
                    histogram: &latency,
                },
                Series {
                    label: "connect".into(),
                    histogram: &empty,
                },
            ],
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("fanout &lt;QoS 1&gt;"));
        assert!(svg.contains(">99.99%<"));
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
        // Every coordinate stays inside the picture.
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for pair in points.split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=WIDTH - RIGHT + 0.1).contains(&x), "x {x}");
            assert!((TOP - 0.1..=HEIGHT - BOTTOM + 0.1).contains(&y), "y {y}");
        }
    }
}
