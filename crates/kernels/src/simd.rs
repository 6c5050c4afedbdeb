//! Which SIMD path this build of `kernels` was compiled for.
//!
//! `wide` chooses its implementation with `cfg(target_feature = ...)` when it is
//! compiled, so the path is a property of the build (the rustflags in
//! `.cargo/config.toml`), not of the machine it runs on.

/// The instruction set the microkernels were compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdPath {
    /// AVX-512F (+FMA): `f32x16` is one zmm register.
    Avx512,
    /// AVX2 + FMA: `f32x8` is one ymm register, `f32x16` two.
    Avx2,
    /// Neither: `wide`'s portable fallback (SSE2 on x86-64, or scalar).
    Portable,
}

impl SimdPath {
    /// The path compiled into this build.
    pub const fn compiled() -> Self {
        if cfg!(all(target_feature = "avx512f", target_feature = "fma")) {
            Self::Avx512
        } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// The lower-case name used by `ACTPRUNE_EXPECT_SIMD` and in reports: `avx512`, `avx2`, `portable`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SimdPath;

    /// `cargo xtask test` builds the kernels several times (native, AVX2, portable)
    /// and names the path it expects in `ACTPRUNE_EXPECT_SIMD`; a build that silently
    /// fell back to another path fails here instead of passing untested.
    #[test]
    fn compiled_path_is_the_one_the_harness_expects() {
        if let Ok(expected) = std::env::var("ACTPRUNE_EXPECT_SIMD") {
            assert_eq!(SimdPath::compiled().name(), expected, "kernels compiled for the wrong SIMD path");
        }
    }
}
