//! The SIMD twins of the hot kernels, chosen at run time, and the packing they share.
//!
//! Every function here computes exactly what its scalar reference computes ([`crate::gemm`]'s
//! `reference` loops, [`crate::math`], the cell loops in [`crate::lstm`]), operation for
//! operation: a vector lane holds one output element, that element's FMA chain runs over k in
//! ascending order in its lane, and nothing is ever added across lanes. So the vector width
//! (8 lanes for AVX2, 4 for NEON, 1 for scalar) cannot change a bit; the property tests in this
//! module and in `lstm` hold each twin equal to its reference on random shapes and data.
//!
//! # Dispatch
//!
//! [`active`] says which path the kernels take on this thread: the one [`with_isa`] forces, else
//! the one the environment variable `MAGPIPE_KERNELS` names (`scalar`, `avx2+fma`, `avx512f`,
//! `neon`; read once per process), else the best the CPU has ([`detected`]): AVX-512F, else AVX2
//! with FMA on x86-64, NEON on aarch64 (baseline there), scalar anywhere else. All give the same
//! bits.
//!
//! # Layout
//!
//! The general product is Goto's: B packed once into panels of `NR` columns (`PackedB`), A
//! packed per block of `KC` × `MC` into panels of `MR` rows, and a micro-kernel that loads
//! an MR × NR tile of C, runs its chains over one K block and stores it back. Storing an f32
//! accumulator and loading it again is exact, so a chain cut into K blocks processed in ascending
//! order is the same chain. The LSTM's forward step has a fused kernel over W_hh packed by gate
//! (`PackedGates`), which takes a tile's four gates of the same hidden units through the cell
//! update while they are still in registers.
//!
//! All `unsafe` of the crate is in this module and its children: raw-pointer loads and stores
//! in the micro-kernels, and calls of `#[target_feature]` functions, which are made only through
//! a `Fast` token that exists only after the CPU was checked.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub mod pool;
mod team;

/// A kernel path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The reference loops ([`crate::gemm::reference`], [`crate::math`]): every target.
    Scalar,
    /// 256-bit AVX2 with FMA (x86-64, checked at run time).
    Avx2Fma,
    /// 512-bit AVX-512F (x86-64, checked at run time): twice AVX2's work per instruction, which
    /// pays on cores with full-width units (Zen 5, Intel Xeon).
    Avx512,
    /// 128-bit NEON with FMA (aarch64, where it is baseline).
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512f",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2Fma => avx2_available(),
            Isa::Avx512 => avx512_available(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// The best path this CPU supports.
pub fn detected() -> Isa {
    if Isa::Avx512.supported() {
        Isa::Avx512
    } else if Isa::Avx2Fma.supported() {
        Isa::Avx2Fma
    } else if Isa::Neon.supported() {
        Isa::Neon
    } else {
        Isa::Scalar
    }
}

/// Every path this CPU can run, scalar first.
pub fn supported_isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512, Isa::Neon]
        .into_iter()
        .filter(|i| i.supported() && implemented(*i))
        .collect()
}

/// The process's path: `MAGPIPE_KERNELS` may name one ([`Isa::name`], e.g. `scalar` for the
/// reference loops or `avx2+fma` to compare with AVX-512 on the same CPU) that this CPU runs;
/// anything else (or nothing) takes [`detected`]. Every path gives the same bits.
fn process_isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let asked = std::env::var("MAGPIPE_KERNELS").unwrap_or_default();
        supported_isas()
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(asked.trim()))
            .unwrap_or_else(detected)
    })
}

thread_local! {
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The path the kernels take on this thread.
pub fn active() -> Isa {
    FORCED.with(Cell::get).unwrap_or_else(process_isa)
}

/// Runs `f` with the kernels of this thread on `isa` (for tests and benchmarks: the results are
/// the same bits either way). Panics if the CPU cannot run `isa`.
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    assert!(
        isa.supported(),
        "this CPU cannot run the {} kernels",
        isa.name()
    );
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(Some(isa))));
    f()
}

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static FORCED_THREADS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Sets how many threads the vector kernels use in this process (1 unless set; the scalar
/// reference is always one thread). Threads split output rows or columns only, never a chain,
/// so every count gives the same bits.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The threads the vector kernels use on this thread's calls.
pub fn threads() -> usize {
    FORCED_THREADS
        .with(Cell::get)
        .unwrap_or_else(|| THREADS.load(Ordering::Relaxed))
}

/// Runs `f` with the kernels called from this thread using `n` threads.
pub fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED_THREADS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED_THREADS.with(|c| c.replace(Some(n.max(1)))));
    f()
}

use team::run_parts;

/// `0..len` cut into `parts` ranges of whole `unit`s, as even as can be (the last takes the
/// remainder), skipping empty ones.
fn split(len: usize, parts: usize, unit: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(unit);
    let parts = parts.clamp(1, units.max(1));
    (0..parts)
        .map(|i| {
            let lo = (units * i / parts * unit).min(len);
            let hi = (units * (i + 1) / parts * unit).min(len);
            (lo, hi)
        })
        .filter(|(lo, hi)| hi > lo)
        .collect()
}

/// `data` cut at the row boundaries of `ranges` (rows of `width` values; the last row may be
/// shorter, as a strided C's is): one disjoint piece per range.
fn split_rows<'a>(
    mut data: &'a mut [f32],
    ranges: &[(usize, usize)],
    width: usize,
) -> Vec<&'a mut [f32]> {
    let mut at = 0;
    let mut out = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        debug_assert_eq!(lo, at);
        let cut = ((hi - lo) * width).min(data.len());
        let (head, tail) = std::mem::take(&mut data).split_at_mut(cut);
        out.push(head);
        data = tail;
        at = hi;
    }
    out
}

/// Proof that a vector path was checked: only [`fast`] makes one, after the CPU check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fast(Isa);

/// The vector path to take now, or `None` for the reference loops.
pub(crate) fn fast() -> Option<Fast> {
    match active() {
        Isa::Scalar => None,
        // `active` only returns a path that `supported` accepted (`with_isa` asserts it,
        // `detected` checks it), and the implementations below exist for each target's own.
        isa if isa.supported() && implemented(isa) => Some(Fast(isa)),
        _ => None,
    }
}

fn implemented(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2Fma | Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

impl Fast {
    /// Columns of a packed B panel, the micro-kernel's tile width.
    fn nr(self) -> usize {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::NR,
            _ => NR,
        }
    }

    /// Hidden units per block of [`PackedGates`].
    fn hb(self) -> usize {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::HB,
            _ => HB,
        }
    }

    /// Batch rows per tile of the fused step (threads take runs of whole tiles).
    fn rb(self) -> usize {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::RB,
            _ => RB,
        }
    }
}

/// Rows of the general micro-kernel's tile.
pub(crate) const MR: usize = 6;
/// Columns of the general micro-kernel's tile (two AVX2 vectors, four NEON vectors; AVX-512's
/// is [`avx512::NR`]).
pub(crate) const NR: usize = 16;
/// The widest tile of any path, for the edge tile's buffer.
const NR_MAX: usize = 32;
/// K block: one A panel (MR × KC) and one B panel (KC × NR) stay in L1.
pub(crate) const KC: usize = 256;
/// M block: the packed A block (MC × KC) stays in L2.
pub(crate) const MC: usize = 72;
const _: () = assert!(MC.is_multiple_of(MR));
/// Hidden units per tile of the fused LSTM step (one AVX2 vector per gate; AVX-512's is
/// [`avx512::HB`]).
pub(crate) const HB: usize = 8;
/// Batch rows per tile of the fused LSTM step.
pub(crate) const RB: usize = 3;

/// A right-hand operand packed into panels of `nr` columns (the micro-kernel's width on the
/// path it was packed for), zero-padded: panel q holds, for p in 0..k ascending, the nr values
/// b(p, q·nr + l).
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    data: Vec<f32>,
}

impl PackedB {
    fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }

    /// From b stored (n × k), b(p, j) = b[j·k + p]: a weight in PyTorch's (out × in) layout as
    /// the right-hand side of x·Wᵀ.
    pub(crate) fn from_nk(f: Fast, b: &[f32], n: usize, k: usize) -> PackedB {
        let nr = f.nr();
        let mut data = pool::zeros(n.div_ceil(nr) * k * nr);
        for (q, panel) in data.chunks_exact_mut((k * nr).max(1)).enumerate() {
            for l in 0..nr.min(n - q * nr) {
                let row = &b[(q * nr + l) * k..(q * nr + l + 1) * k];
                for (p, &v) in row.iter().enumerate() {
                    panel[p * nr + l] = v;
                }
            }
        }
        PackedB { k, n, nr, data }
    }

    /// From b stored (k × n), b(p, j) = b[p·n + j].
    pub(crate) fn from_kn(f: Fast, b: &[f32], k: usize, n: usize) -> PackedB {
        let nr = f.nr();
        let mut data = pool::zeros(n.div_ceil(nr) * k * nr);
        for (q, panel) in data.chunks_exact_mut((k * nr).max(1)).enumerate() {
            let (j0, w) = (q * nr, nr.min(n - q * nr));
            for p in 0..k {
                panel[p * nr..p * nr + w].copy_from_slice(&b[p * n + j0..p * n + j0 + w]);
            }
        }
        PackedB { k, n, nr, data }
    }

    /// Panel q from row p0 on.
    fn panel(&self, q: usize, p0: usize) -> &[f32] {
        &self.data[(q * self.k + p0) * self.nr..(q + 1) * self.k * self.nr]
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.data));
    }
}

/// A left-hand operand (m × k) as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lhs<'a> {
    /// a(i, p) = a[i·ld + p].
    Rows(&'a [f32], usize),
    /// a(i, p) = a[p·ld + i]: the transposed operand of a reduction over rows (K = t·B + b).
    Cols(&'a [f32], usize),
}

/// Packs rows i0..i0+mc, columns p0..p0+kc of `a` into panels of [`MR`] rows, zero-padded:
/// panel s holds, for p ascending, a(i0 + s·MR + r, p) for r in 0..MR.
fn pack_a(dst: &mut [f32], a: Lhs<'_>, i0: usize, mc: usize, p0: usize, kc: usize) {
    for (s, panel) in dst
        .chunks_exact_mut(kc * MR)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let rows = MR.min(mc - s * MR);
        let r0 = i0 + s * MR;
        if rows < MR {
            panel.fill(0.0);
        }
        match a {
            Lhs::Rows(a, ld) => {
                for r in 0..rows {
                    let row = &a[(r0 + r) * ld + p0..(r0 + r) * ld + p0 + kc];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * MR + r] = v;
                    }
                }
            }
            Lhs::Cols(a, ld) => {
                for p in 0..kc {
                    let col = &a[(p0 + p) * ld + r0..];
                    let dst = &mut panel[p * MR..(p + 1) * MR];
                    if rows == MR {
                        // A copy of a length known here is a few moves, not a call to memcpy.
                        dst.copy_from_slice(&col[..MR]);
                    } else {
                        dst[..rows].copy_from_slice(&col[..rows]);
                    }
                }
            }
        }
    }
}

/// An MR × nr micro-kernel (nr: its path's panel width, [`Fast::nr`]): `c(r, l) = chain_p(a(r,
/// p) · b(p, l), init = c(r, l))` for p in 0..kc, with a(r, p) at `a + r·rsa + p·csa` (a packed
/// panel has rsa = 1, csa = MR; rows of a row-major matrix have rsa = ld, csa = 1), `b` a B
/// panel (nr per p), c row-major with stride ldc.
///
/// # Safety
/// The CPU runs the kernel's instruction set; a(r, p) is readable for r < MR, p < kc; `b` holds
/// kc·nr readable values; c has MR rows of nr writable values at stride ldc.
type MicroKernel = unsafe fn(
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
);

/// `c(i, j) = chain_p(a(i, p) · b(p, j), init = c(i, j))` for i < m, j < n = b.n, p < k = b.k:
/// the blocked driver around one micro-kernel. c is row-major with stride ldc ≥ n.
fn gemm_blocked(kernel: MicroKernel, c: &mut [f32], ldc: usize, m: usize, a: Lhs<'_>, b: &PackedB) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too small");
    match a {
        Lhs::Rows(a, ld) => assert!(ld >= k && a.len() >= (m - 1) * ld + k),
        Lhs::Cols(a, ld) => assert!(ld >= m && a.len() >= (k - 1) * ld + m),
    }
    // Rows of a row-major A are read in place; a transposed A (Cols) is packed per block, and so
    // is a last panel of fewer than MR rows (zero-padded, so the kernel reads nothing past A).
    let packed_panels = match a {
        Lhs::Cols(..) => MC.min(m).div_ceil(MR),
        // Only the last M block can end in a short panel (MC is a multiple of MR).
        Lhs::Rows(..) if !(m % MC).is_multiple_of(MR) => 1,
        Lhs::Rows(..) => 0,
    };
    let mut apack = vec![0.0f32; packed_panels * MR * KC.min(k)];
    let nr_full = b.nr;
    let mut tile = [0.0f32; MR * NR_MAX];
    // K blocks in ascending order: each element's chain continues from the value stored.
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        for i0 in (0..m).step_by(MC) {
            let mc = MC.min(m - i0);
            let panels = mc.div_ceil(MR);
            match a {
                Lhs::Cols(..) => pack_a(&mut apack, a, i0, mc, p0, kc),
                Lhs::Rows(..) if !mc.is_multiple_of(MR) => {
                    let s = panels - 1;
                    pack_a(&mut apack[..kc * MR], a, i0 + s * MR, mc - s * MR, p0, kc);
                }
                Lhs::Rows(..) => {}
            }
            for q in 0..b.panels() {
                let (j0, nr) = (q * nr_full, nr_full.min(n - q * nr_full));
                let bp = b.panel(q, p0);
                for s in 0..panels {
                    let (r0, mr) = (i0 + s * MR, MR.min(mc - s * MR));
                    let (ap, rsa, csa) = match a {
                        Lhs::Rows(a, ld) if mr == MR => (a[r0 * ld + p0..].as_ptr(), ld, 1),
                        // The short panel of a row-major A is the one packed panel.
                        Lhs::Rows(..) => (apack[..kc * MR].as_ptr(), 1, MR),
                        Lhs::Cols(..) => (apack[s * kc * MR..(s + 1) * kc * MR].as_ptr(), 1, MR),
                    };
                    if mr == MR && nr == nr_full {
                        let ct = &mut c[r0 * ldc + j0..(r0 + MR - 1) * ldc + j0 + nr_full];
                        // SAFETY: `Fast` exists only for a checked CPU (the caller matched it);
                        // a(r, p) for r < MR, p < kc lies inside A (rows r0..r0+MR ≤ m, columns
                        // p0..p0+kc ≤ k, lengths asserted above) or inside its packed panel; bp
                        // holds at least kc·nr values; ct has MR rows of nr at stride ldc.
                        unsafe { kernel(kc, ap, rsa, csa, bp.as_ptr(), ct.as_mut_ptr(), ldc) };
                    } else {
                        // An edge tile goes through a full one; the padded lanes are dropped.
                        let w = nr_full;
                        for r in 0..mr {
                            let row = &c[(r0 + r) * ldc + j0..(r0 + r) * ldc + j0 + nr];
                            tile[r * w..r * w + nr].copy_from_slice(row);
                        }
                        // SAFETY: as above, with the tile's MR rows of nr_full ≤ NR_MAX at stride
                        // nr_full (a short panel comes from `apack`, zero-padded to MR rows).
                        unsafe { kernel(kc, ap, rsa, csa, bp.as_ptr(), tile.as_mut_ptr(), w) };
                        for r in 0..mr {
                            c[(r0 + r) * ldc + j0..(r0 + r) * ldc + j0 + nr]
                                .copy_from_slice(&tile[r * w..r * w + nr]);
                        }
                    }
                }
            }
        }
    }
}

/// `c(i, j) = chain_p(a(i, p) · b(p, j), init = c(i, j))` on the vector path `f`, its rows
/// shared among [`threads`] threads in runs of whole micro-kernel panels.
pub(crate) fn gemm(f: Fast, c: &mut [f32], ldc: usize, m: usize, a: Lhs<'_>, b: &PackedB) {
    if m == 0 || b.n == 0 || b.k == 0 {
        return; // every chain is its init
    }
    assert_eq!(b.nr, f.nr(), "B was packed for another path");
    let kernel = micro_kernel(f);
    let ranges = split(m, threads(), MR);
    if ranges.len() <= 1 {
        gemm_blocked(kernel, c, ldc, m, a, b);
        return;
    }
    let parts: Vec<_> = ranges
        .iter()
        .zip(split_rows(c, &ranges, ldc))
        .map(|(&(lo, hi), c)| {
            let a = match a {
                Lhs::Rows(a, ld) => Lhs::Rows(&a[lo * ld..], ld),
                Lhs::Cols(a, ld) => Lhs::Cols(&a[lo..], ld),
            };
            (hi - lo, a, c)
        })
        .collect();
    run_parts(parts, |(rows, a, c)| {
        gemm_blocked(kernel, c, ldc, rows, a, b)
    });
}

fn micro_kernel(f: Fast) -> MicroKernel {
    match f.0 {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => avx2::kernel_6x16,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::kernel_6x32,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::kernel_6x16,
        _ => unreachable!("no vector kernels for {:?} on this target", f.0),
    }
}

/// `c[j] = Σ_p a[p][j]` in ascending p from 0.0, plain adds; a: k × n. Threads take runs of
/// columns.
pub(crate) fn sum_rows(f: Fast, c: &mut [f32], a: &[f32], k: usize, n: usize) {
    assert!(c.len() >= n && a.len() >= k * n);
    let ranges = split(n, threads(), 64);
    let parts: Vec<_> = ranges
        .iter()
        .zip(split_rows(&mut c[..n], &ranges, 1))
        .collect();
    run_parts(parts, |(&(lo, hi), c)| match f.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx2Fma)` exists only after the CPU check; c holds hi − lo values and
        // a, read from column lo at stride n, k rows of them.
        Isa::Avx2Fma => unsafe { avx2::sum_rows(c, &a[lo..], k, hi - lo, n) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx512)` exists only after the CPU check; extents as above.
        Isa::Avx512 => unsafe { avx512::sum_rows(c, &a[lo..], k, hi - lo, n) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the extents are as above.
        Isa::Neon => unsafe { neon::sum_rows(c, &a[lo..], k, hi - lo, n) },
        _ => unreachable!(),
    });
}

/// W_hh (4h × h, gate rows i, f, g, o) packed for the fused step on path `f`: for hidden block
/// q of hb units ([`Fast::hb`]) and p in 0..h ascending, the 4·hb values W_hh[g·h + q·hb + l][p]
/// (g-major), zero for units past h.
#[derive(Debug, Clone)]
pub(crate) struct PackedGates {
    hidden: usize,
    hb: usize,
    data: Vec<f32>,
}

impl PackedGates {
    pub(crate) fn new(f: Fast, w_hh: &[f32], hidden: usize) -> PackedGates {
        let (h, hb) = (hidden, f.hb());
        let blocks = h.div_ceil(hb);
        let mut data = vec![0.0; blocks * h * 4 * hb];
        for q in 0..blocks {
            for g in 0..4 {
                for l in 0..hb.min(h - q * hb) {
                    let row = &w_hh[(g * h + q * hb + l) * h..(g * h + q * hb + l + 1) * h];
                    for (p, &v) in row.iter().enumerate() {
                        data[((q * h + p) * 4 + g) * hb + l] = v;
                    }
                }
            }
        }
        PackedGates { hidden, hb, data }
    }
}

/// One LSTM step's buffers, each row-major: `gates` (B × 4h) holds the input projection (the
/// chains' init) on entry and the activated gates i, f, g, o on return; read: `h_prev`,
/// `c_prev` (B × h); written: `c`, `tanh_c`, `h` (B × h).
pub(crate) struct StepIo<'a> {
    pub batch: usize,
    pub h_prev: &'a [f32],
    pub c_prev: &'a [f32],
    pub gates: &'a mut [f32],
    pub c: &'a mut [f32],
    pub tanh_c: &'a mut [f32],
    pub h: &'a mut [f32],
}

/// The fused forward step (lib.rs, item 3): pre-activations `chain_k(h_prev · W_hh, init =
/// gates)`, the gates, the cell and the output, tile by tile; threads take runs of batch rows.
pub(crate) fn lstm_step(f: Fast, w: &PackedGates, io: StepIo<'_>) {
    let (b, h) = (io.batch, w.hidden);
    assert!(
        w.hb == f.hb()
            && w.data.len() == h.div_ceil(w.hb) * h * 4 * w.hb
            && io.gates.len() == b * 4 * h
            && [
                io.h_prev.len(),
                io.c_prev.len(),
                io.c.len(),
                io.tanh_c.len(),
                io.h.len()
            ]
            .iter()
            .all(|&l| l == b * h),
        "step buffers of the wrong size"
    );
    let ranges = split(b, threads(), f.rb());
    let StepIo {
        h_prev,
        c_prev,
        gates,
        c,
        tanh_c,
        h: h_out,
        ..
    } = io;
    let parts: Vec<_> = ranges
        .iter()
        .zip(split_rows(gates, &ranges, 4 * h))
        .zip(split_rows(c, &ranges, h))
        .zip(split_rows(tanh_c, &ranges, h))
        .zip(split_rows(h_out, &ranges, h))
        .map(|((((&(lo, hi), gates), c), tanh_c), h_out)| StepIo {
            batch: hi - lo,
            h_prev: &h_prev[lo * h..hi * h],
            c_prev: &c_prev[lo * h..hi * h],
            gates,
            c,
            tanh_c,
            h: h_out,
        })
        .collect();
    run_parts(parts, |io| match f.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx2Fma)` exists only after the CPU check; the sizes are asserted and
        // each part's buffers are its rows of them.
        Isa::Avx2Fma => unsafe { avx2::lstm_step(&w.data, h, io) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx512)` exists only after the CPU check; W_hh was packed for it
        // (asserted) and the buffers are as above.
        Isa::Avx512 => unsafe { avx512::lstm_step(&w.data, h, io) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the sizes are as above.
        Isa::Neon => unsafe { neon::lstm_step(&w.data, h, io) },
        _ => unreachable!(),
    });
}

/// One step of backpropagation through time's cell part (lstm.rs's `cell_backward`): from the
/// saved `gates` (B × 4h), `c_prev`, `tanh_c` and the total `dh` (B × h), writes `dg` (B × 4h)
/// and turns the carry `dc` into ∂L/∂c_{t−1}.
pub(crate) struct CellGrad<'a> {
    pub batch: usize,
    pub hidden: usize,
    pub gates: &'a [f32],
    pub c_prev: &'a [f32],
    pub tanh_c: &'a [f32],
    pub dh: &'a [f32],
    pub dc: &'a mut [f32],
    pub dg: &'a mut [f32],
}

pub(crate) fn cell_backward(f: Fast, io: CellGrad<'_>) {
    let bh = io.batch * io.hidden;
    assert!(
        io.gates.len() == 4 * bh
            && io.dg.len() == 4 * bh
            && [io.c_prev.len(), io.tanh_c.len(), io.dh.len(), io.dc.len()]
                .iter()
                .all(|&l| l == bh),
        "cell buffers of the wrong size"
    );
    let h = io.hidden;
    let ranges = split(io.batch, threads(), 1);
    let CellGrad {
        gates,
        c_prev,
        tanh_c,
        dh,
        dc,
        dg,
        ..
    } = io;
    let parts: Vec<_> = ranges
        .iter()
        .zip(split_rows(dc, &ranges, h))
        .zip(split_rows(dg, &ranges, 4 * h))
        .map(|((&(lo, hi), dc), dg)| CellGrad {
            batch: hi - lo,
            hidden: h,
            gates: &gates[lo * 4 * h..hi * 4 * h],
            c_prev: &c_prev[lo * h..hi * h],
            tanh_c: &tanh_c[lo * h..hi * h],
            dh: &dh[lo * h..hi * h],
            dc,
            dg,
        })
        .collect();
    run_parts(parts, |io| match f.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx2Fma)` exists only after the CPU check; the sizes are asserted and
        // each part's buffers are its rows of them.
        Isa::Avx2Fma => unsafe { avx2::cell_backward(io) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fast(Avx512)` exists only after the CPU check; sizes as above.
        Isa::Avx512 => unsafe { avx512::cell_backward(io) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the sizes are as above.
        Isa::Neon => unsafe { neon::cell_backward(io) },
        _ => unreachable!(),
    });
}

/// The vector exp, expm1, tanh and sigmoid over a slice (for the tests that hold them equal to
/// [`crate::math`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFn {
    Exp,
    Expm1,
    Tanh,
    Sigmoid,
}

impl MathFn {
    pub const ALL: [MathFn; 4] = [MathFn::Exp, MathFn::Expm1, MathFn::Tanh, MathFn::Sigmoid];

    pub fn scalar(self) -> fn(f32) -> f32 {
        match self {
            MathFn::Exp => crate::math::exp,
            MathFn::Expm1 => crate::math::expm1,
            MathFn::Tanh => crate::math::tanh,
            MathFn::Sigmoid => crate::math::sigmoid,
        }
    }
}

/// `out[i] = func(xs[i])` on the active path (the scalar functions when it is scalar).
pub fn map_math(func: MathFn, xs: &[f32], out: &mut [f32]) {
    assert_eq!(xs.len(), out.len());
    match fast().map(|f| f.0) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast` returned AVX2 only after the CPU check; the lengths are equal.
        Some(Isa::Avx2Fma) => unsafe { avx2::map_math(func, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast` returned AVX-512 only after the CPU check; the lengths are equal.
        Some(Isa::Avx512) => unsafe { avx512::map_math(func, xs, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the lengths are equal.
        Some(Isa::Neon) => unsafe { neon::map_math(func, xs, out) },
        _ => {
            let f = func.scalar();
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = f(x);
            }
        }
    }
}

#[cfg(test)]
mod tests;
