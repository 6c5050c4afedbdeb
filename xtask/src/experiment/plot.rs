//! The plots of a report, each drawn twice with `plotters`: SVG (for the README and
//! `report.md`) and PNG. Every file is drawn under a temporary name and renamed, so a
//! reader never sees half a plot.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::recipes::PlotKind;
use super::report::{Setting, Stat};

/// A plot's size in pixels, width × height.
const SIZE: (u32, u32) = (900, 560);

/// One line of a chart: points (x, mean ± std of y).
struct Series {
    name: String,
    points: Vec<(f64, Stat)>,
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

/// Draws `$body` (with the drawing area bound to `$root`) into `$dir/$stem.svg` and
/// `$dir/$stem.png`, each under a temporary name first. A macro rather than a function
/// because one closure cannot take both backends' drawing areas. (The PNG encoder picks
/// the format from the extension, so the temporary name ends in `.png` too.)
macro_rules! render {
    ($dir:expr, $stem:expr, |$root:ident| $body:expr) => {{
        let pid = std::process::id();
        let svg_tmp = $dir.join(format!(".{}.{pid}.tmp.svg", $stem));
        {
            let area = SVGBackend::new(&svg_tmp, SIZE).into_drawing_area();
            let $root = &area;
            $body?;
            area.present().map_err(err)?;
        }
        std::fs::rename(&svg_tmp, $dir.join(format!("{}.svg", $stem)))?;
        let png_tmp = $dir.join(format!(".{}.{pid}.tmp.png", $stem));
        {
            let area = BitMapBackend::new(&png_tmp, SIZE).into_drawing_area();
            let $root = &area;
            $body?;
            area.present().map_err(err)?;
        }
        std::fs::rename(&png_tmp, $dir.join(format!("{}.png", $stem)))?;
    }};
}

/// Draws `kinds` from `settings` into `dir`; returns the stems (file names without
/// `.svg`/`.png`) of the plots drawn. A kind without data draws nothing.
pub fn draw(dir: &Path, kinds: &[PlotKind], settings: &[Setting]) -> anyhow::Result<Vec<String>> {
    let done: Vec<&Setting> = settings.iter().filter(|s| !s.runs.is_empty()).collect();
    let mut stems = Vec::new();
    for kind in kinds {
        match kind {
            PlotKind::AccuracyVsWidth => {
                let pts: Vec<&&Setting> = done.iter().filter(|s| s.config.hidden.len() == 2).collect();
                let unpruned = |s: &&&Setting| s.config.strategy == "none";
                // `width-search` mixes a uniform sweep with searches that start from one of its
                // widths: only the sweep belongs here (the searches are on the MACs plot).
                // `thesis` prunes every run: its final accuracy is plotted at the starting width.
                let mixed = pts.iter().any(unpruned) && !pts.iter().all(unpruned);
                let trained: Vec<&&&Setting> = pts.iter().filter(|s| !mixed || unpruned(s)).collect();
                let mut series = vec![Series {
                    name: "trained".into(),
                    points: trained
                        .iter()
                        .map(|s| (s.config.hidden[0] as f64, s.trained_accuracy()))
                        .collect(),
                }];
                if !mixed && !pts.iter().all(unpruned) {
                    series.push(Series {
                        name: "pruned, re-initialised, retrained (at the starting width)".into(),
                        points: pts.iter().map(|s| (s.config.hidden[0] as f64, s.accuracy())).collect(),
                    });
                }
                series.retain(|s| !s.points.is_empty());
                if !series.is_empty() {
                    let stem = "accuracy_vs_width";
                    render!(dir, stem, |root| line_chart(
                        root,
                        "Test accuracy against hidden width (mean ± std over seeds)",
                        "neurons per hidden layer",
                        &series
                    ));
                    stems.push(stem.to_string());
                }
            }
            PlotKind::AccuracyVsPruned => {
                let mut groups: Vec<(String, String)> =
                    done.iter().map(|s| (s.config.model.clone(), s.config.strategy.clone())).collect();
                groups.sort();
                groups.dedup();
                for (model, strategy) in groups {
                    let mut criteria: Vec<&str> = done
                        .iter()
                        .filter(|s| s.config.model == model && s.config.strategy == strategy)
                        .map(|s| s.config.criterion.as_str())
                        .collect();
                    criteria.dedup();
                    let series: Vec<Series> = criteria
                        .iter()
                        .map(|c| Series {
                            name: c.to_string(),
                            points: done
                                .iter()
                                .filter(|s| {
                                    s.config.model == model
                                        && s.config.strategy == strategy
                                        && s.config.criterion == *c
                                })
                                .map(|s| (s.fraction_removed().mean, s.accuracy()))
                                .collect(),
                        })
                        .collect();
                    let stem = format!("accuracy_vs_pruned_{}_{strategy}", slug(&model));
                    let title =
                        format!("{model}, {strategy}: accuracy against fraction of hidden neurons removed");
                    render!(dir, &stem, |root| line_chart(
                        root,
                        &title,
                        "fraction of hidden neurons removed",
                        &series
                    ));
                    stems.push(stem);
                }
            }
            PlotKind::AccuracyVsPretrain => {
                let series = vec![
                    Series {
                        name: "after fine-tuning".into(),
                        points: done.iter().map(|s| (s.config.pretrain_epochs, s.accuracy())).collect(),
                    },
                    Series {
                        name: "before pruning".into(),
                        points: done
                            .iter()
                            .map(|s| (s.config.pretrain_epochs, s.trained_accuracy()))
                            .collect(),
                    },
                ];
                if !done.is_empty() {
                    let stem = "accuracy_vs_pretrain";
                    render!(dir, stem, |root| line_chart(
                        root,
                        "Accuracy against pre-training before pruning",
                        "epochs of pre-training",
                        &series
                    ));
                    stems.push(stem.to_string());
                }
            }
            PlotKind::AccuracyVsMacs => {
                let uniform: Vec<(f64, f64)> = done
                    .iter()
                    .filter(|s| s.config.schedule == "none")
                    .map(|s| (s.stat(|r| r.metrics.macs_after as f64).mean, s.accuracy().mean))
                    .collect();
                let guided: Vec<(f64, f64)> = done
                    .iter()
                    .filter(|s| s.config.schedule != "none")
                    .flat_map(|s| s.runs.iter())
                    .map(|r| (r.metrics.macs_after as f64, r.metrics.test_accuracy))
                    .collect();
                if !uniform.is_empty() || !guided.is_empty() {
                    let stem = "accuracy_vs_macs";
                    render!(dir, stem, |root| pareto_chart(root, &uniform, &guided));
                    stems.push(stem.to_string());
                }
            }
            PlotKind::FiringRates => {
                // The widest setting with recorded firing rates; its seeds summed.
                let Some(s) = done
                    .iter()
                    .filter(|s| s.runs.iter().any(|r| !r.metrics.firing_histograms.is_empty()))
                    .max_by_key(|s| {
                        (s.config.hidden.iter().sum::<usize>(), std::cmp::Reverse(s.config.model.clone()))
                    })
                else {
                    continue;
                };
                let layers = s.runs.iter().map(|r| r.metrics.firing_histograms.len()).max().unwrap_or(0);
                let hists: Vec<Vec<u64>> = (0..layers)
                    .map(|l| {
                        let bins = s
                            .runs
                            .iter()
                            .filter_map(|r| r.metrics.firing_histograms.get(l))
                            .map(|h| h.len())
                            .max()
                            .unwrap_or(0);
                        (0..bins)
                            .map(|b| {
                                s.runs
                                    .iter()
                                    .filter_map(|r| r.metrics.firing_histograms.get(l).and_then(|h| h.get(b)))
                                    .map(|&c| c as u64)
                                    .sum()
                            })
                            .collect()
                    })
                    .collect();
                let stem = "firing_rates";
                let title = format!(
                    "{} (hidden {:?}): firing rates on the validation split",
                    s.config.model, s.config.hidden
                );
                render!(dir, stem, |root| histograms(root, &title, &hists));
                stems.push(stem.to_string());
            }
        }
    }
    Ok(stems)
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn range_y(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.005);
    ((lo - pad).max(0.0), (hi + pad).min(1.0))
}

fn range_x(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Lines with mean ± std error bars; y is an accuracy shown in percent.
fn line_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range_x(pts().map(|p| p.0));
    let (y0, y1) = range_y(pts().flat_map(|(_, st)| [st.mean - st.std, st.mean + st.std]));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    // Widths and epochs read best as whole numbers, fractions with two decimals.
    let x_fmt = move |v: &f64| if x1 - x0 > 10.0 { format!("{v:.0}") } else { format!("{v:.2}") };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&x_fmt)
        .y_desc("test accuracy")
        .y_label_formatter(&|v| format!("{:.1}%", 100.0 * v))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<(f64, Stat)> = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().map(|(x, st)| (*x, st.mean)), color.stroke_width(2)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        // Error bars drawn as paths: plotters' `ErrorBar` needs a feature the workspace does not enable.
        let cap = (x1 - x0) * 0.006;
        for (x, st) in pts.iter().filter(|(_, st)| st.std > 0.0) {
            let (lo, hi) = (st.mean - st.std, st.mean + st.std);
            let bar = vec![(*x, lo), (*x, hi)];
            let caps = [vec![(*x - cap, lo), (*x + cap, lo)], vec![(*x - cap, hi), (*x + cap, hi)]];
            chart
                .draw_series(
                    std::iter::once(bar).chain(caps).map(|p| PathElement::new(p, color.stroke_width(1))),
                )
                .map_err(err)?;
        }
        chart
            .draw_series(pts.iter().map(|(x, st)| Circle::new((*x, st.mean), 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The points whose accuracy beats every point with fewer MACs, by MACs.
fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|q| p.1 > q.1) {
            front.push(p);
        }
    }
    front
}

/// Accuracy against MACs: the uniform widths, the searched widths and the Pareto front of both.
fn pareto_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    uniform: &[(f64, f64)],
    guided: &[(f64, f64)],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<(f64, f64)> = uniform.iter().chain(guided).copied().collect();
    let (x0, x1) = range_x(all.iter().map(|p| p.0 / 1e6));
    let (y0, y1) = range_y(all.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(root)
        .caption("Accuracy against MACs per image", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("million MACs per image")
        .y_desc("test accuracy")
        .y_label_formatter(&|v| format!("{:.1}%", 100.0 * v))
        .draw()
        .map_err(err)?;
    let front = pareto_front(&all);
    chart
        .draw_series(LineSeries::new(front.iter().map(|p| (p.0 / 1e6, p.1)), BLACK.mix(0.5).stroke_width(1)))
        .map_err(err)?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    for (i, (name, pts)) in
        [("uniform widths", uniform), ("activation-guided", guided)].into_iter().enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0 / 1e6, p.1), 4, color.filled())))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// One histogram of firing rates per hidden layer, side by side.
fn histograms<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    hists: &[Vec<u64>],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
    let cols = hists.len().max(1);
    let areas = root.split_evenly((1, cols));
    for (l, (area, h)) in areas.iter().zip(hists).enumerate() {
        let bins = h.len().max(1);
        let top = h.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("hidden layer {}", l + 1), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("firing rate")
            .y_desc("neurons")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        let color = Palette99::pick(l).to_rgba();
        chart
            .draw_series(h.iter().enumerate().map(|(b, &c)| {
                let x0 = b as f64 / bins as f64;
                let x1 = (b + 1) as f64 / bins as f64;
                Rectangle::new([(x0, 0.0), (x1, c as f64)], color.filled())
            }))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::report::settings;
    use crate::experiment::store::sample_record;

    #[test]
    fn pareto_front_keeps_only_improvements() {
        let f = pareto_front(&[(3.0, 0.9), (1.0, 0.8), (2.0, 0.7), (4.0, 0.95), (5.0, 0.94)]);
        assert_eq!(f, vec![(1.0, 0.8), (3.0, 0.9), (4.0, 0.95)]);
    }

    #[test]
    fn plots_are_valid_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> =
            [(1, 100, 0.9), (2, 100, 0.92), (1, 200, 0.95)].map(|(s, w, a)| sample_record(s, w, a)).into();
        let plan: Vec<_> = recs.iter().map(|r| r.config.clone()).collect();
        let st = settings(&plan, &recs);
        let kinds = [
            PlotKind::AccuracyVsWidth,
            PlotKind::AccuracyVsPruned,
            PlotKind::AccuracyVsPretrain,
            PlotKind::AccuracyVsMacs,
            PlotKind::FiringRates,
        ];
        let stems = draw(dir.path(), &kinds, &st).unwrap();
        assert!(stems.len() >= 5, "{stems:?}");
        for stem in &stems {
            let svg = std::fs::read_to_string(dir.path().join(format!("{stem}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{stem}");
            assert!(svg.contains("<text"), "{stem}: no labels");
            let png = std::fs::read(dir.path().join(format!("{stem}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}");
        }
        // Every run pruned (as in `thesis`): both the trained and the final accuracy.
        let width = std::fs::read_to_string(dir.path().join("accuracy_vs_width.svg")).unwrap();
        assert!(width.contains(">\ntrained\n<") || width.contains(">trained<"), "no trained series");
        assert!(width.contains("pruned, re-initialised, retrained"), "no final series");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(leftovers, 0);
    }
}
