//! Mechanical checks of the house conventions, run as tests: every Rust source file
//! opens with a `//!` doc comment, has no trailing whitespace, and `unsafe` appears
//! only in `kernels` and `mnist-io`, each block preceded by a `// SAFETY:` line.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') && name != "corpus" && name != "artifacts" {
                    rust_files(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    fn all_sources() -> Vec<PathBuf> {
        let root = crate::project_root();
        let mut files = Vec::new();
        for dir in ["crates", "xtask", "tests", "fuzz"] {
            rust_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 5, "tidy found too few sources under {}", root.display());
        files
    }

    #[test]
    fn every_file_opens_with_a_module_doc_comment() {
        let bad: Vec<_> = all_sources()
            .into_iter()
            .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
            .collect();
        assert!(bad.is_empty(), "files without a leading `//!` doc comment: {bad:#?}");
    }

    #[test]
    fn no_trailing_whitespace() {
        let mut bad = Vec::new();
        for p in all_sources() {
            for (i, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
                if line.ends_with(' ') || line.ends_with('\t') {
                    bad.push(format!("{}:{}", p.display(), i + 1));
                }
            }
        }
        assert!(bad.is_empty(), "trailing whitespace at {bad:#?}");
    }

    #[test]
    fn unsafe_only_in_kernels_and_mnist_io_with_safety_comments() {
        let root = crate::project_root();
        let mut bad = Vec::new();
        for p in all_sources() {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            let allowed = rel.starts_with("crates/kernels/") || rel.starts_with("crates/mnist-io/");
            let text = std::fs::read_to_string(&p).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                // The needle is split so that this file does not match itself.
                if !code.contains(concat!("unsafe", " {")) {
                    continue;
                }
                if !allowed {
                    bad.push(format!("{rel}:{}: unsafe outside kernels/mnist-io", i + 1));
                    continue;
                }
                // The SAFETY line sits directly above the block (or above the statement holding it).
                let has_safety = lines[..i].iter().rev().take(4).any(|l| l.contains("SAFETY:"))
                    || line.contains("SAFETY:");
                if !has_safety {
                    bad.push(format!("{rel}:{}: unsafe block without a `// SAFETY:` line", i + 1));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
