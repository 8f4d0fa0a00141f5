//! The HdrHistogram percentile distribution text (`.hgrm`), as HdrHistogram's
//! `outputPercentileDistribution` writes it, so existing plotters and comparison tools read
//! it. Values are written in milliseconds.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100%, as HdrHistogram's default output uses.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Nanoseconds per output unit (milliseconds).
const NS_PER_MS: f64 = 1e6;

/// Sub-buckets per bucket for a histogram's precision, as HdrHistogram computes it.
fn sub_bucket_count(significant_digits: u8) -> u64 {
    let single_unit_resolution = 2.0 * 10f64.powi(i32::from(significant_digits));
    let magnitude = single_unit_resolution.log2().ceil() as u32;
    1u64 << magnitude.max(1)
}

/// The percentile distribution of a nanosecond histogram, values in milliseconds.
pub fn render(histogram: &Histogram<u64>) -> String {
    let digits = usize::from(histogram.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !histogram.is_empty() {
        for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / NS_PER_MS;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {quantile:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {quantile:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            histogram.mean() / NS_PER_MS,
            histogram.stdev() / NS_PER_MS,
            histogram.max() as f64 / NS_PER_MS,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_latency_histogram;

    #[test]
    fn distribution_has_the_standard_layout() {
        let mut histogram = new_latency_histogram();
        for micros in 1..=1000u64 {
            histogram.record(micros * 1000).unwrap();
        }
        let text = render(&histogram);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first, ["0.001", "0.000000000000", "1", "1.00"]);
        let data: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .collect();
        let last: Vec<&str> = data.last().unwrap().split_whitespace().collect();
        assert_eq!(last.len(), 3, "the 100% line has no 1/(1-p) column");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        let median = data
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f[1] == "0.500000000000")
            .unwrap();
        assert_eq!(median[0], "0.500");
        assert_eq!(median[3], "2.00");
        let counts: Vec<u64> = data
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "counts never decrease"
        );
        assert!(text.contains("#[Mean    =        0.50"), "{text}");
        assert!(text.contains(", StdDeviation   =        0.289]"), "{text}");
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let text = render(&new_latency_histogram());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }
}
