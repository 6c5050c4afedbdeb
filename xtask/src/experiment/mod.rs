//! `cargo xtask experiment`: named, versioned recipes that train, prune and retrain
//! many models and write the results as `runs.jsonl`, `summary.csv`, `report.md` and
//! plots under `results/<experiment>/<sweep>/`.
//!
//! A recipe (`recipes/`) expands the options into a deterministic list of runs, each
//! with a stable id (`config.rs`); `sweep.rs` runs the unfinished ones of this shard
//! (`shard.rs`) through `pipeline.rs` (net + prune), appending each finished run to
//! `runs.jsonl` (`store.rs`); `report.rs` and `plot.rs` summarise; `merge.rs` joins
//! the directories of the shards of one sweep.

use std::path::PathBuf;

use anyhow::{Context, bail};

pub mod config;
pub mod merge;
pub mod pipeline;
pub mod plot;
pub mod recipes;
pub mod report;
pub mod shard;
pub mod store;
pub mod sweep;

use recipes::Plan;
use shard::Shard;

/// Options of `cargo xtask experiment`.
#[derive(clap::Args)]
pub struct Args {
    /// The recipe (`thesis`, `criteria`, `pretrain`, `width-search`, `all`), or `merge`.
    /// Without a name, lists the recipes.
    pub name: Option<String>,
    /// With `merge`: the shard directories to join.
    pub dirs: Vec<PathBuf>,
    /// The small budget that finishes in a few minutes (as CI runs it).
    #[arg(long)]
    pub quick: bool,
    /// Seeds per setting (default: 1 with --quick, 3 otherwise).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Threads of the compute pool (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder with the four IDX files (default `data/mnist`, fetched on first use).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where results go (default `results/` in the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only slice i of n of the sweep (numbered from 1), e.g. `--shard 2/4`.
    #[arg(long, default_value = "1/1")]
    pub shard: Shard,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| crate::project_root().join("results"));
    let Some(name) = args.name.as_deref() else {
        list();
        return Ok(());
    };
    if name == "merge" {
        merge::merge(&args.dirs, &out)?;
        return Ok(());
    }
    if !args.dirs.is_empty() {
        bail!("unexpected arguments after `{name}`: {:?} (only `merge` takes directories)", args.dirs);
    }
    let chosen: Vec<&recipes::Recipe> = if name == "all" {
        recipes::all().to_vec()
    } else {
        vec![
            recipes::find(name)
                .with_context(|| format!("no recipe `{name}`; `cargo xtask experiment` lists them"))?,
        ]
    };

    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            let d = crate::project_root().join("data").join("mnist");
            if !d.join("train-images-idx3-ubyte").exists() {
                crate::fetch_mnist::ensure(&d).context("fetching MNIST into the default data folder")?;
            }
            d
        }
    };
    let mnist = mnist_io::Mnist::open(&data)
        .and_then(mnist_io::Mnist::into_resident)
        .with_context(|| format!("opening the dataset in {}", data.display()))?;
    let (h, w) = mnist.train.image_dims();
    let classes = mnist.train.num_classes().max(mnist.test.num_classes());
    let seeds = args.seeds.unwrap_or_else(|| recipes::default_seeds(args.quick));
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let plan = Plan { quick: args.quick, seeds, input: [1, h, w], classes };

    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("building the thread pool")?;
    let prov = sweep::Provenance::detect(threads);
    let mut exec = pipeline::Pipeline::new(&mnist);
    for recipe in chosen {
        let dir = pool.install(|| sweep::run_sweep(recipe, &plan, args.shard, &out, &mut exec, &prov))?;
        eprintln!("experiment {}: report in {}", recipe.name, dir.join("report.md").display());
    }
    Ok(())
}

fn list() {
    println!(
        "Recipes (cargo xtask experiment NAME [--quick] [--seeds N] [--threads T] [--data DIR] [--out DIR] [--shard i/n]):\n"
    );
    for r in recipes::all() {
        println!(
            "  {:<13} v{}  {}",
            r.name,
            r.version,
            r.about.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    println!("  {:<13}     every recipe above, one after the other", "all");
    println!(
        "\n  cargo xtask experiment merge DIR…   joins the shard directories of one sweep into one report"
    );
}
