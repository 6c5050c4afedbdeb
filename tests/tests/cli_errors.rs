//! Invalid command-line values: each gives a failing exit and a first error line that
//! names the flag and the accepted range (or the file, or the mismatch), before any
//! work is done. Drives the release xtask binary on synthetic IDX data.

mod synthetic;
mod xtask_bin;

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs xtask with `args`; asserts it fails and returns its first stderr line.
fn first_error_line(args: &[&str]) -> String {
    let out = Command::new(xtask_bin::xtask())
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("cannot start xtask");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "xtask {args:?} succeeded; stderr: {stderr}");
    stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string()
}

fn assert_names(line: &str, words: &[&str]) {
    for w in words {
        assert!(line.contains(w), "the error line does not mention `{w}`: {line}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary paths")
}

#[test]
fn invalid_values_name_the_flag_and_the_accepted_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::write_mnist(&dir.path().join("data"), 300, 50, 28, 28);
    let small = synthetic::write_mnist(&dir.path().join("small"), 300, 50, 8, 8);
    let model = dir.path().join("m.safetensors");
    let out = dir.path().join("out.safetensors");
    let trained = Command::new(xtask_bin::xtask())
        .args(xtask_bin::train_tiny_mlp_args(s(&data), s(&model)))
        .output()
        .unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let prune = |extra: &[&str], data: &Path, model: &Path| {
        let mut a = vec!["prune", "--criterion", "apoz", "--validation", "50", "--out", s(&out)];
        a.extend(["--data", s(data), "--model-file", s(model)]);
        a.extend(extra);
        first_error_line(
            &a.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    };

    // A negative ratio and a ratio of 1 or more.
    assert_names(&prune(&["--ratio", "-0.5"], &data, &model), &["--ratio", "-0.5", "[0, 1)"]);
    assert_names(&prune(&["--ratio", "1"], &data, &model), &["--ratio", "1", "[0, 1)"]);
    assert_names(&prune(&["--ratio", "1.5"], &data, &model), &["--ratio", "[0, 1)"]);
    assert_names(&prune(&["--global", "-0.1"], &data, &model), &["--global", "[0, 1)"]);
    assert_names(&prune(&["--max-drop", "2"], &data, &model), &["--max-drop", "[0, 1]"]);
    // Zero epochs of training.
    let line = first_error_line(&["train", "--epochs", "0", "--data", s(&data), "--out", s(&out)]);
    assert_names(&line, &["--epochs", "0", "at least 1"]);
    // More images held out than the dataset has.
    let line = first_error_line(&["train", "--validation", "1000000", "--data", s(&data), "--out", s(&out)]);
    assert_names(&line, &["--validation", "1000000", "fewer than"]);
    // A missing file.
    let missing = dir.path().join("missing.safetensors");
    assert_names(&prune(&["--ratio", "0.5"], &data, &missing), &["--model-file", "missing.safetensors"]);
    // A dataset whose images do not fit the model.
    assert_names(&prune(&["--ratio", "0.5"], &small, &model), &["--data", "8×8", "28"]);
    let line =
        first_error_line(&["train", "--model", "mlp:784-16-10", "--data", s(&small), "--out", s(&out)]);
    assert_names(&line, &["--model", "--data", "8×8"]);
    // Nothing was written by any of the failed commands.
    assert!(!out.exists(), "a failed command wrote its output file");
}
