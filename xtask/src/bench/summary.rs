//! `cargo xtask bench summary`: ours beside PyTorch, read back from the folders that
//! `bench session` wrote, as the markdown table the README shows.
//!
//! A session's speed figures mean something beside PyTorch's of the same minutes (this
//! machine is shared and drifts by ~10% within an hour), so each session gets its own
//! table of medians and ratios; given several sessions, a last table pools their runs
//! and gives each ratio's range over the sessions. `bench session` writes its own
//! `summary.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Options of `cargo xtask bench summary`.
#[derive(clap::Args, Debug, Clone)]
pub struct SummaryArgs {
    /// Session folders (`results/bench/<UTC date-time>`), one or more.
    #[arg(required = true)]
    pub sessions: Vec<PathBuf>,
}

/// Seconds measured for one model at one thread count.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    /// Seconds per training epoch: each `bench train` run's median, or each PyTorch epoch.
    pub epochs: Vec<f64>,
    /// Seconds to infer the 10,000 test images at batch 1000, one per run.
    pub inference: Vec<f64>,
}

/// What one session folder holds: the commit and, per `(model, threads)`, our figures
/// and PyTorch's (`lenet5` and `mlp`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Session {
    /// The folder's name (its UTC date-time).
    pub name: String,
    /// The commit `machine.txt` names (`?` when it names none).
    pub commit: String,
    /// `bench train`'s runs.
    pub ours: BTreeMap<(String, usize), Figures>,
    /// PyTorch's (`train_bench.py`) runs.
    pub torch: BTreeMap<(String, usize), Figures>,
}

/// Prints the summary of the sessions given.
pub fn run(args: &SummaryArgs) -> anyhow::Result<()> {
    let sessions = args.sessions.iter().map(|d| read_session(d)).collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", render(&sessions));
    Ok(())
}

/// Reads a session folder: `machine.txt`, every `train-*.txt` (the table `bench train`
/// prints) and every `torch-*.txt` (the `SUMMARY` line of PyTorch's script).
///
/// # Errors
/// A folder without `train-*.txt`, or a figure that does not parse (naming the file
/// and line).
pub fn read_session(dir: &Path) -> anyhow::Result<Session> {
    let name =
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let commit = std::fs::read_to_string(dir.join("machine.txt"))
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("commit: ").map(|c| c.trim().to_string())))
        .unwrap_or_else(|| "?".into());
    let mut session = Session { name, commit, ..Session::default() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the session folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for path in &files {
        let file = file_name(path);
        if file.starts_with("train-") && file.ends_with(".txt") {
            read_train(path, &mut session.ours)?;
        } else if file.starts_with("torch-") && file.ends_with(".txt") {
            read_torch(path, &mut session.torch)?;
        }
    }
    if session.ours.is_empty() {
        bail!("{}: no figures in train-*.txt (is this a `bench session` folder?)", dir.display());
    }
    Ok(session)
}

/// The rows of `bench train`'s table: `model threads epoch_s cpu_s img/s inference_s …`.
fn read_train(path: &Path, ours: &mut BTreeMap<(String, usize), Figures>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(&model), Some(Ok(threads))) = (fields.first(), fields.get(1).map(|t| t.parse::<usize>()))
        else {
            continue;
        };
        if !matches!(model, "lenet5" | "mlp") {
            continue;
        }
        let number = |i: usize, what: &str| -> anyhow::Result<f64> {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .with_context(|| {
                    format!(
                        "{}:{}: {what} (field {}) is not a positive number: {line:?}",
                        path.display(),
                        n + 1,
                        i + 1
                    )
                })
        };
        let figures = ours.entry((model.to_string(), threads)).or_default();
        figures.epochs.push(number(2, "epoch seconds")?);
        figures.inference.push(number(5, "inference seconds")?);
    }
    Ok(())
}

/// The `SUMMARY {json}` line of `train_bench.py`: `cfg`, `threads`, `epoch_s` (every
/// epoch) and `infer_ms_median`.
fn read_torch(path: &Path, torch: &mut BTreeMap<(String, usize), Figures>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let Some(json) = text.lines().find_map(|l| l.strip_prefix("SUMMARY ")) else {
        bail!("{}: no SUMMARY line (did the PyTorch run finish?)", path.display());
    };
    let v: serde_json::Value = serde_json::from_str(json)
        .with_context(|| format!("{}: the SUMMARY line is not JSON", path.display()))?;
    let field = |key: &str| v.get(key).with_context(|| format!("{}: SUMMARY has no {key:?}", path.display()));
    let model = match field("cfg")?.as_str() {
        Some("lenet") => "lenet5",
        Some("mlp_thesis") => "mlp",
        other => bail!("{}: SUMMARY cfg {other:?}, expected \"lenet\" or \"mlp_thesis\"", path.display()),
    };
    let threads = field("threads")?
        .as_u64()
        .with_context(|| format!("{}: SUMMARY threads is not a whole number", path.display()))?;
    let epochs: Vec<f64> = field("epoch_s")?
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    let inference = field("infer_ms_median")?
        .as_f64()
        .with_context(|| format!("{}: SUMMARY infer_ms_median is not a number", path.display()))?;
    if epochs.is_empty() {
        bail!("{}: SUMMARY epoch_s holds no epoch times", path.display());
    }
    let figures = torch.entry((model.to_string(), threads as usize)).or_default();
    figures.epochs.extend(epochs);
    figures.inference.push(inference / 1000.0);
    Ok(())
}

/// The median of `v` (the mean of the middle two for an even count); `None` if empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (n > 0).then(|| if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// The table rows: what is measured, and how to take it from a model's figures.
const ROWS: [(&str, &str, bool); 4] = [
    ("lenet5", "LeNet-5 training epoch", false),
    ("mlp", "MLP 784-600-600-10 training epoch", false),
    ("lenet5", "LeNet-5 inference, 10,000 images, batch 1000", true),
    ("mlp", "MLP-600 inference, 10,000 images, batch 1000", true),
];

/// Pooled medians of `(ours, PyTorch)` for one row and thread count over `sessions`.
fn medians(
    sessions: &[&Session],
    model: &str,
    threads: usize,
    inference: bool,
) -> (Option<f64>, Option<f64>) {
    let pick = |f: &Figures| if inference { f.inference.clone() } else { f.epochs.clone() };
    let pool = |side: fn(&Session) -> &BTreeMap<(String, usize), Figures>| {
        let all: Vec<f64> = sessions
            .iter()
            .filter_map(|s| side(s).get(&(model.to_string(), threads)))
            .flat_map(pick)
            .collect();
        median(&all)
    };
    (pool(|s| &s.ours), pool(|s| &s.torch))
}

/// Markdown: one table per session, then, for several, one over all of them.
pub fn render(sessions: &[Session]) -> String {
    let mut md = String::new();
    let seconds = |v: Option<f64>| {
        v.map_or("—".into(), |s| if s < 0.2 { format!("{s:.4} s") } else { format!("{s:.3} s") })
    };
    let ratio = |ours: Option<f64>, torch: Option<f64>| ours.zip(torch).map(|(o, t)| t / o);
    let header = "| | PyTorch 1 thread | ours 1 thread | PyTorch 2 threads | ours 2 threads | ours vs PyTorch, 1 / 2 threads |\n|---|---|---|---|---|---|\n";
    for s in sessions {
        let _ = writeln!(md, "### Session {} (commit {})\n", s.name, short(&s.commit));
        md.push_str(header);
        for (model, label, inference) in ROWS {
            let (o1, t1) = medians(&[s], model, 1, inference);
            let (o2, t2) = medians(&[s], model, 2, inference);
            let _ = writeln!(
                md,
                "| {label} | {} | **{}** | {} | **{}** | {} / {} |",
                seconds(t1),
                seconds(o1),
                seconds(t2),
                seconds(o2),
                times(ratio(o1, t1)),
                times(ratio(o2, t2))
            );
        }
        md.push('\n');
    }
    if sessions.len() > 1 {
        let all: Vec<&Session> = sessions.iter().collect();
        let mut commits: Vec<&str> = sessions.iter().map(|s| short(&s.commit)).collect();
        commits.dedup();
        let _ = writeln!(
            md,
            "### All {} sessions (commits {}): medians of every run, and each ratio's range over the sessions\n",
            sessions.len(),
            commits.join(", ")
        );
        md.push_str(header);
        for (model, label, inference) in ROWS {
            let mut cells = Vec::new();
            let mut ratios = Vec::new();
            for threads in [1, 2] {
                let (o, t) = medians(&all, model, threads, inference);
                cells.push((seconds(t), seconds(o)));
                let per: Vec<f64> = all
                    .iter()
                    .filter_map(|s| {
                        let (o, t) = medians(&[*s], model, threads, inference);
                        ratio(o, t)
                    })
                    .collect();
                let range = match (per.iter().copied().reduce(f64::min), per.iter().copied().reduce(f64::max))
                {
                    (Some(lo), Some(hi)) => format!(" ({lo:.2}–{hi:.2})"),
                    _ => String::new(),
                };
                ratios.push(format!("{}{range}", times(ratio(o, t))));
            }
            let _ = writeln!(
                md,
                "| {label} | {} | **{}** | {} | **{}** | {} / {} |",
                cells[0].0, cells[0].1, cells[1].0, cells[1].1, ratios[0], ratios[1]
            );
        }
        md.push('\n');
    }
    md
}

/// `2.16×`, or `—` without both sides.
fn times(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

/// The first 7 characters of a commit (a dirty flag after it is kept).
fn short(commit: &str) -> &str {
    let end = commit.char_indices().nth(7).map_or(commit.len(), |(i, _)| i);
    if commit[end..].chars().all(|c| c.is_ascii_hexdigit()) { &commit[..end] } else { commit }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "model    threads     epoch s epoch CPU s      img/s   inference s   GEMM peak   of peak\n";

    fn write_session(dir: &Path, ours: &[(&str, &str)], torch: &[(&str, usize, &[f64], f64)]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("machine.txt"), "commit: 0123456789abcdef\ncpu: test\n").unwrap();
        for (file, rows) in ours {
            std::fs::write(dir.join(file), format!("   Compiling net\n{TABLE}{rows}")).unwrap();
        }
        for (cfg, threads, epochs, infer_ms) in torch {
            let json = serde_json::json!({"cfg": cfg, "threads": threads, "epoch_s": epochs, "infer_ms_median": infer_ms});
            std::fs::write(
                dir.join(format!("torch-{cfg}-{threads}.txt")),
                format!("epoch 1: …\nSUMMARY {json}\n"),
            )
            .unwrap();
        }
    }

    fn row(model: &str, threads: usize, epoch: f64, inference: f64) -> String {
        format!(
            "{model:<8} {threads:>7} {epoch:>11.3} {:>11.3} {:>10} {inference:>13.4}    168.0 GF     72.6%\n",
            epoch, 30000
        )
    }

    #[test]
    fn a_session_reads_back_as_medians_and_ratios() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("20261208-0057");
        let run1 = row("lenet5", 1, 1.5, 0.08) + &row("mlp", 1, 2.0, 0.09) + &row("mlp", 2, 1.1, 0.045);
        let run2 = row("lenet5", 1, 1.7, 0.09) + &row("mlp", 1, 2.2, 0.10) + &row("mlp", 2, 1.0, 0.047);
        let run3 = row("mlp", 1, 2.1, 0.095);
        write_session(
            &s,
            &[("train-1.txt", &run1), ("train-2.txt", &run2), ("train-3.txt", &run3)],
            &[("lenet", 1, &[6.0, 6.4, 6.3], 580.0), ("mlp_thesis", 1, &[4.2, 4.0, 4.1], 120.0)],
        );
        let session = read_session(&s).unwrap();
        assert_eq!(session.commit, "0123456789abcdef");
        assert_eq!(session.ours[&("mlp".into(), 1)].epochs, [2.0, 2.2, 2.1]);
        assert_eq!(session.torch[&("lenet5".into(), 1)].inference, [0.58]);
        let md = render(std::slice::from_ref(&session));
        assert!(md.contains("### Session 20261208-0057 (commit 0123456)"), "{md}");
        // LeNet-5 epoch: PyTorch 6.3 s over ours 1.6 s (the mean of the middle two).
        assert!(
            md.contains("| LeNet-5 training epoch | 6.300 s | **1.600 s** | — | **—** | 3.94× / — |"),
            "{md}"
        );
        // MLP epoch: 4.1 / 2.1 at 1 thread; no PyTorch at 2 threads.
        assert!(
            md.contains(
                "| MLP 784-600-600-10 training epoch | 4.100 s | **2.100 s** | — | **1.050 s** | 1.95× / — |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| MLP-600 inference, 10,000 images, batch 1000 | 0.1200 s | **0.0950 s** |"),
            "{md}"
        );
        assert!(!md.contains("All "), "one session gets no pooled table");
    }

    #[test]
    fn several_sessions_pool_their_runs_and_give_each_ratios_range() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_session(&a, &[("train-1.txt", &row("mlp", 2, 1.0, 0.05))], &[("mlp_thesis", 2, &[2.0], 60.0)]);
        write_session(&b, &[("train-1.txt", &row("mlp", 2, 1.2, 0.05))], &[("mlp_thesis", 2, &[3.0], 60.0)]);
        let sessions = [read_session(&a).unwrap(), read_session(&b).unwrap()];
        let md = render(&sessions);
        // Pooled: PyTorch 2.5 s over ours 1.1 s; per session 2.0 and 2.5.
        assert!(md.contains("### All 2 sessions (commits 0123456)"), "{md}");
        assert!(md.contains("| MLP 784-600-600-10 training epoch | — | **—** | 2.500 s | **1.100 s** | — / 2.27× (2.00–2.50) |"), "{md}");
    }

    #[test]
    fn bad_figures_and_folders_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s");
        write_session(&s, &[("train-1.txt", "mlp 1 2.0 2.0 30000 nan 168 GF 70%\n")], &[]);
        let err = format!("{:#}", read_session(&s).unwrap_err());
        assert!(err.contains("train-1.txt:3: inference seconds (field 6)"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = format!("{:#}", read_session(&empty).unwrap_err());
        assert!(err.contains("no figures in train-*.txt"), "{err}");
        std::fs::write(s.join("train-1.txt"), row("mlp", 1, 2.0, 0.09)).unwrap();
        std::fs::write(s.join("torch-mlp_thesis-1.txt"), "epoch 1: 3.9 s\n").unwrap();
        let err = format!("{:#}", read_session(&s).unwrap_err());
        assert!(err.contains("torch-mlp_thesis-1.txt: no SUMMARY line"), "{err}");
    }
}
