//! `cargo xtask bench summary`: ours beside PyTorch, read back from the folders that
//! `bench session` wrote, as the markdown table the README shows.
//!
//! A session's speed figures mean something beside PyTorch's of the same minutes (this
//! machine is shared and drifts by ~10% within an hour), so each session gets its own
//! table of medians and ratios; given several sessions, a last table pools their runs
//! and gives each ratio's range over the sessions. Then the kernels: `bench gemm`'s
//! shapes beside the `gemm` crate, `matrixmultiply` and OpenBLAS (matched by `m × k × n`)
//! and `bench conv`'s cases, medians over the sessions, with ours as a fraction of the
//! median FMA ceiling. `bench session` writes its own `summary.md`.

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
    /// `bench gemm` (`gemm.txt`), absent in a session without it.
    pub gemm: Option<KernelTable>,
    /// `bench conv` (`conv.txt`).
    pub conv: Option<KernelTable>,
    /// numpy/OpenBLAS (`openblas-T.txt`): GFLOP/s per `((m, k, n), threads)`.
    pub openblas: BTreeMap<(Dims, usize), f64>,
}

/// `(m, k, n)` of a GEMM shape.
pub type Dims = (usize, usize, usize);

/// A kernel benchmark's table: the FMA ceiling per thread count and, per row (a GEMM
/// shape or a convolution case, in the order printed) and thread count, GFLOP/s of ours
/// and of the two peer columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KernelTable {
    /// GFLOP/s of the FMA ceiling, per thread count.
    pub peak: BTreeMap<usize, f64>,
    /// Row names in the order printed, with `(m, k, n)` for GEMM shapes.
    pub rows: Vec<(String, Option<Dims>)>,
    /// `[ours, peer 1, peer 2]` GFLOP/s per `(row, threads)`.
    pub gflops: BTreeMap<(String, usize), [f64; 3]>,
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
        } else if file == "gemm.txt" {
            session.gemm = Some(read_kernel_table(path, true)?);
        } else if file == "conv.txt" {
            session.conv = Some(read_kernel_table(path, false)?);
        } else if let Some(threads) = file.strip_prefix("openblas-").and_then(|f| f.strip_suffix(".txt")) {
            let threads = threads
                .parse::<usize>()
                .with_context(|| format!("{}: no thread count in the name", path.display()))?;
            read_openblas(path, threads, &mut session.openblas)?;
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

/// `bench gemm`'s table (`shape m k n threads ours gemm matrixmultiply of-peak`, with
/// `fma_peak - - - threads gflops`) or `bench conv`'s (`case threads auto lowered gemm
/// of-peak`, with `fma_peak threads gflops`); other lines are skipped.
fn read_kernel_table(path: &Path, gemm: bool) -> anyhow::Result<KernelTable> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut table = KernelTable::default();
    let (dims, first) = if gemm { (3, 4) } else { (0, 1) };
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(Ok(threads)) = fields.get(first).map(|t| t.parse::<usize>()) else { continue };
        let number = |i: usize| -> anyhow::Result<f64> {
            fields.get(i).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()).with_context(|| {
                format!("{}:{}: field {} is not a number: {line:?}", path.display(), n + 1, i + 1)
            })
        };
        let name = fields[0].to_string();
        if name == "fma_peak" {
            table.peak.insert(threads, number(first + 1)?);
            continue;
        }
        if fields.len() < first + 4 {
            continue;
        }
        let shape = if gemm {
            let d: Vec<usize> = fields[1..=dims].iter().filter_map(|v| v.parse().ok()).collect();
            let [m, k, n] = d[..] else { continue };
            Some((m, k, n))
        } else {
            None
        };
        if !table.rows.iter().any(|(r, _)| *r == name) {
            table.rows.push((name.clone(), shape));
        }
        table.gflops.insert((name, threads), [number(first + 1)?, number(first + 2)?, number(first + 3)?]);
    }
    Ok(table)
}

/// `gemm_bench.py`'s lines: `name … M= m K= k N= n median t ms g GFLOP/s …`.
fn read_openblas(path: &Path, threads: usize, out: &mut BTreeMap<(Dims, usize), f64>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| fields.iter().position(|f| *f == key).and_then(|i| fields.get(i + 1));
        let (Some(m), Some(k), Some(nn)) = (after("M="), after("K="), after("N=")) else { continue };
        let parsed = (m.parse::<usize>(), k.parse::<usize>(), nn.parse::<usize>());
        let gflops = fields
            .iter()
            .position(|f| *f == "GFLOP/s")
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| fields[i].parse::<f64>().ok());
        match (parsed, gflops) {
            ((Ok(m), Ok(k), Ok(nn)), Some(g)) => {
                out.insert(((m, k, nn), threads), g);
            }
            _ => bail!("{}:{}: expected M= K= N= and GFLOP/s figures: {line:?}", path.display(), n + 1),
        }
    }
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
    let key = (model.to_string(), threads);
    let pool = |side: fn(&Session) -> &BTreeMap<(String, usize), Figures>| {
        fn pick(f: &Figures, inference: bool) -> &[f64] {
            if inference { &f.inference } else { &f.epochs }
        }
        let all: Vec<f64> = sessions
            .iter()
            .filter_map(|s| side(s).get(&key))
            .flat_map(|f| pick(f, inference))
            .copied()
            .collect();
        median(&all)
    };
    (pool(|s| &s.ours), pool(|s| &s.torch))
}

/// Markdown: one table per session, then, for several, one over all of them.
pub fn render(sessions: &[Session]) -> String {
    let mut md = String::new();
    for s in sessions {
        let _ = writeln!(md, "### Session {} (commit {})\n", s.name, short(&s.commit));
        training_table(&[s], &mut md);
    }
    if sessions.len() > 1 {
        let mut commits: Vec<&str> = sessions.iter().map(|s| short(&s.commit)).collect();
        commits.dedup();
        let _ = writeln!(
            md,
            "### All {} sessions (commits {}): medians of every run, and each ratio's range over the sessions\n",
            sessions.len(),
            commits.join(", ")
        );
        training_table(&sessions.iter().collect::<Vec<_>>(), &mut md);
    }
    render_kernels(sessions, &mut md);
    md
}

/// Ours beside PyTorch over `sessions` (their runs pooled): seconds and ratios at 1 and
/// 2 threads, and, for several sessions, each ratio's range over them.
fn training_table(sessions: &[&Session], md: &mut String) {
    let seconds = |v: Option<f64>| {
        v.map_or("—".into(), |s| if s < 0.2 { format!("{s:.4} s") } else { format!("{s:.3} s") })
    };
    md.push_str(
        "| | PyTorch 1 thread | ours 1 thread | PyTorch 2 threads | ours 2 threads | ours vs PyTorch, 1 / 2 threads |\n|---|---|---|---|---|---|\n",
    );
    for (model, label, inference) in ROWS {
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        for threads in [1, 2] {
            let (o, t) = medians(sessions, model, threads, inference);
            cells.push((seconds(t), seconds(o)));
            let per: Vec<f64> =
                sessions.iter().filter_map(|s| ratio_of(medians(&[*s], model, threads, inference))).collect();
            let range = match (per.iter().copied().reduce(f64::min), per.iter().copied().reduce(f64::max)) {
                (Some(lo), Some(hi)) if sessions.len() > 1 => format!(" ({lo:.2}–{hi:.2})"),
                _ => String::new(),
            };
            ratios.push(format!("{}{range}", times(ratio_of((o, t)))));
        }
        let _ = writeln!(
            md,
            "| {label} | {} | **{}** | {} | **{}** | {} / {} |",
            cells[0].0, cells[0].1, cells[1].0, cells[1].1, ratios[0], ratios[1]
        );
    }
    md.push('\n');
}

/// PyTorch's seconds over ours, from `(ours, PyTorch)`.
fn ratio_of((ours, torch): (Option<f64>, Option<f64>)) -> Option<f64> {
    ours.zip(torch).map(|(o, t)| t / o)
}

/// GEMM and convolution tables, medians over the sessions that have them: ours, as a
/// fraction of the median FMA ceiling, and the peers, each as `1 thread / 2 threads`.
fn render_kernels(sessions: &[Session], md: &mut String) {
    // `a / b` for 1 and 2 threads, whole numbers followed by `unit`.
    let pair = |f: &dyn Fn(usize) -> Option<f64>, unit: &str| -> String {
        let cell = |t| f(t).map_or("—".into(), |v| format!("{v:.0}{unit}"));
        format!("{} / {}", cell(1), cell(2))
    };
    for (gemm, title) in [(true, "GEMM (`bench gemm`)"), (false, "Convolution (`bench conv`)")] {
        let tables: Vec<&KernelTable> =
            sessions.iter().filter_map(|s| if gemm { s.gemm.as_ref() } else { s.conv.as_ref() }).collect();
        if tables.is_empty() {
            continue;
        }
        let peak =
            |t: usize| median(&tables.iter().filter_map(|k| k.peak.get(&t).copied()).collect::<Vec<_>>());
        let col = |row: &str, t: usize, c: usize| {
            median(
                &tables
                    .iter()
                    .filter_map(|k| k.gflops.get(&(row.to_string(), t)).map(|g| g[c]))
                    .collect::<Vec<_>>(),
            )
        };
        let _ = writeln!(
            md,
            "### {title}: GFLOP/s, 1 / 2 threads, medians of {} session(s); FMA ceiling {}\n",
            tables.len(),
            pair(&peak, "")
        );
        if gemm {
            md.push_str("| shape | m × k × n | ours | of peak | `gemm` | `matrixmultiply` | OpenBLAS |\n|---|---|---|---|---|---|---|\n");
        } else {
            md.push_str(
                "| case | auto | of peak | im2col + our GEMM | im2col + `gemm` |\n|---|---|---|---|---|\n",
            );
        }
        let mut rows: Vec<(String, Option<Dims>)> = Vec::new();
        for table in &tables {
            for r in &table.rows {
                if !rows.contains(r) {
                    rows.push(r.clone());
                }
            }
        }
        for (row, shape) in rows {
            let of_peak = pair(&|t| col(&row, t, 0).zip(peak(t)).map(|(o, p)| 100.0 * o / p), "%");
            let ours = pair(&|t| col(&row, t, 0), "");
            let (p1, p2) = (pair(&|t| col(&row, t, 1), ""), pair(&|t| col(&row, t, 2), ""));
            match shape {
                Some((m, k, n)) => {
                    let blas = |t: usize| {
                        median(
                            &sessions
                                .iter()
                                .filter_map(|s| s.openblas.get(&((m, k, n), t)).copied())
                                .collect::<Vec<_>>(),
                        )
                    };
                    let _ = writeln!(
                        md,
                        "| {row} | {m} × {k} × {n} | {ours} | {of_peak} | {p1} | {p2} | {} |",
                        pair(&blas, "")
                    );
                }
                None => {
                    let _ = writeln!(md, "| {row} | {ours} | {of_peak} | {p1} | {p2} |");
                }
            }
        }
        md.push('\n');
    }
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
    fn kernel_tables_pool_ours_the_peers_and_openblas_by_shape() {
        let dir = tempfile::tempdir().unwrap();
        let gemm = |ours: f64| {
            format!(
                "GFLOP/s, median; SIMD path avx512\nshape m k n thr ours gemm mm of peak\n\
                 fma_peak - - - 1 200.0\nsq512 512 512 512 1 {ours} 180.0 150.0 80.0%\n\
                 mlp784_AtB 784 64 600 1 140.0 150.0 145.0 70.0%\nfma_peak - - - 2 400.0\n\
                 sq512 512 512 512 2 300.0 290.0 220.0 75.0%\n"
            )
        };
        let conv =
            "case thr auto lowered gemm of peak\nfma_peak 1 210.0\nconv1_fwd 1 105.0 36.0 25.0 50.0%\n";
        let blas = "sq512                  M=   512 K=  512 N=   512  median    1.8 ms    144.0 GFLOP/s  [min 1 .. max 2]\n";
        for (name, ours) in [("a", 160.0), ("b", 172.0)] {
            let s = dir.path().join(name);
            write_session(&s, &[("train-1.txt", &row("mlp", 1, 2.0, 0.09))], &[]);
            std::fs::write(s.join("gemm.txt"), gemm(ours)).unwrap();
            std::fs::write(s.join("conv.txt"), conv).unwrap();
            std::fs::write(s.join("openblas-1.txt"), format!("numpy 2.4\nloadavg at start 1.0\n{blas}"))
                .unwrap();
        }
        let sessions =
            [read_session(&dir.path().join("a")).unwrap(), read_session(&dir.path().join("b")).unwrap()];
        let table = sessions[0].gemm.as_ref().unwrap();
        assert_eq!(table.peak[&2], 400.0);
        assert_eq!(table.rows[1], ("mlp784_AtB".to_string(), Some((784, 64, 600))));
        assert_eq!(sessions[0].openblas[&((512, 512, 512), 1)], 144.0);
        let md = render(&sessions);
        assert!(md.contains("FMA ceiling 200 / 400"), "{md}");
        // Ours: the median of 160 and 172, 166: 83% of 200.
        assert!(
            md.contains(
                "| sq512 | 512 × 512 × 512 | 166 / 300 | 83% / 75% | 180 / 290 | 150 / 220 | 144 / — |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| mlp784_AtB | 784 × 64 × 600 | 140 / — | 70% / — | 150 / — | 145 / — | — / — |"),
            "{md}"
        );
        assert!(md.contains("| conv1_fwd | 105 / — | 50% / — | 36 / — | 25 / — |"), "{md}");
        std::fs::write(
            dir.path().join("a/openblas-2.txt"),
            "sq512 M= 512 K= x N= 512 median 1 ms 9 GFLOP/s\n",
        )
        .unwrap();
        let err = format!("{:#}", read_session(&dir.path().join("a")).unwrap_err());
        assert!(err.contains("openblas-2.txt:1: expected M= K= N="), "{err}");
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
