//! What a result computed by this crate records about its engine: the numerics version that
//! enters the key of every `kernels: portable` stage, and the code path that ran, which its
//! record names.

/// The version of the numerics contract (lib.rs). Bumped whenever a change to this crate
/// changes any bit it computes (a kernel's order of operations, a polynomial, an initial
/// weight's draw), so results of the old bits never share a key with the new ones. Changes that
/// keep every bit (a faster kernel held equal to the scalar reference) leave it.
pub const NUMERICS: u32 = 1;

/// The crate's version, as it names itself in records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which implementation of the kernels runs on this thread ([`crate::simd::active`]): the scalar
/// reference or a SIMD twin of it. Every path gives the same bits; the record says which one ran
/// so that speed can be traced to it.
pub fn code_path() -> &'static str {
    match crate::simd::active() {
        crate::simd::Isa::Scalar => "scalar reference",
        isa => isa.name(),
    }
}

/// `magpipe-kernels <version>, <code path>`: what a portable stage's record says ran.
pub fn describe() -> String {
    format!("magpipe-kernels {VERSION}, {}", code_path())
}

#[cfg(test)]
mod tests {
    use crate::simd::{Isa, detected, with_isa};

    #[test]
    fn describe_names_the_crate_version_and_path() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            with_isa(Isa::Scalar, super::describe),
            format!("magpipe-kernels {version}, scalar reference")
        );
        if detected() == Isa::Avx2Fma {
            assert_eq!(
                with_isa(Isa::Avx2Fma, super::describe),
                format!("magpipe-kernels {version}, avx2+fma")
            );
        }
    }
}
