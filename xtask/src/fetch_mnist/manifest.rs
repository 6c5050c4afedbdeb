//! The manifest of the MNIST files: `data/SHA256SUMS`, the published SHA-256 of each
//! *decompressed* file, in the `sha256sum` format (`<64 hex digits>  <name>`).

use anyhow::{Context, bail, ensure};

/// The manifest kept in `data/SHA256SUMS`, the source of truth, embedded at compile
/// time (cargo rebuilds xtask when the file changes).
pub const STANDARD: &str = include_str!("../../../data/SHA256SUMS");

/// One file the fetcher must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File name in the destination folder, e.g. `t10k-labels-idx1-ubyte`.
    pub name: String,
    /// SHA-256 of the decompressed file, 64 lowercase hex digits.
    pub sha256: String,
}

/// The files to fetch and their hashes, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The entries, in the order of the manifest's lines.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// The four standard MNIST files, from `data/SHA256SUMS`.
    pub fn standard() -> Manifest {
        Manifest::parse(STANDARD).expect("data/SHA256SUMS is a valid manifest (checked by a unit test)")
    }

    /// Parses `sha256sum` output: one `<hash>  <name>` per line (a `*` before the name,
    /// binary mode, is accepted); blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parse = || -> anyhow::Result<Entry> {
                let (hash, name) =
                    line.split_once(char::is_whitespace).context("expected `<sha256>  <name>`")?;
                let name = name.trim_start().trim_start_matches('*');
                ensure!(
                    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                    "`{hash}` is not 64 hex digits"
                );
                ensure!(
                    !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
                    "`{name}` is not a plain file name"
                );
                Ok(Entry { name: name.to_string(), sha256: hash.to_ascii_lowercase() })
            };
            entries.push(parse().with_context(|| format!("manifest line {}: `{line}`", i + 1))?);
        }
        if entries.is_empty() {
            bail!("the manifest lists no file");
        }
        Ok(Manifest { entries })
    }

    /// The same manifest restricted to `names` (tests fetch one small file this way).
    #[cfg(test)]
    pub fn only(&self, names: &[&str]) -> Manifest {
        let entries = self.entries.iter().filter(|e| names.contains(&e.name.as_str())).cloned().collect();
        Manifest { entries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_manifest_holds_the_published_hashes() {
        let m = Manifest::standard();
        let got: Vec<(&str, &str)> = m.entries.iter().map(|e| (e.name.as_str(), e.sha256.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    "t10k-images-idx3-ubyte",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
                ),
                (
                    "t10k-labels-idx1-ubyte",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
                ),
                (
                    "train-images-idx3-ubyte",
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
                ),
                (
                    "train-labels-idx1-ubyte",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
                ),
            ]
        );
    }

    #[test]
    fn parse_accepts_sha256sum_formats_and_rejects_garbage() {
        let hash = "AB".repeat(32);
        let m = Manifest::parse(&format!("# comment\n\n{hash} *x.bin\n")).unwrap();
        assert_eq!(m.entries, [Entry { name: "x.bin".into(), sha256: "ab".repeat(32) }]);
        for bad in ["", "abc  x", hash.as_str(), &format!("{hash}  ../x"), &format!("{}  x", "g".repeat(64))]
        {
            assert!(Manifest::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let err = Manifest::parse(&format!("{hash}  a\nzz  b\n")).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
