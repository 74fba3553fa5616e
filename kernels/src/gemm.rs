//! The matrix products. Each output element is one FMA chain over k ascending,
//! `acc = a.mul_add(b, acc)`, from the initial value each function states; nothing else about the
//! loops matters to the result, so a faster version may tile, vectorise over i or j, or thread
//! over i and j freely, but must keep each element's chain whole and in this order.
//!
//! The functions at the top level take the path [`simd::active`] names: the packed, blocked
//! SIMD products of [`crate::simd`] or the plain loops of [`mod@reference`], which are the
//! specification. Both give the same bits (property tests in `simd`).
//!
//! All matrices are row-major slices. These are kernels, not entry points: the callers have
//! checked the shapes, and a slice shorter than its shape says panics.

use crate::simd::{self, Lhs, PackedB};

/// `c[i][j] = chain_p(a[i][p] · b[j][p], init = bias[j])`: x·Wᵀ + bias with W in PyTorch's
/// (out × in) layout. a: m×k, b: n×k, bias: n, c: m×n (overwritten).
pub fn matmul_abt_bias(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    m: usize,
    n: usize,
    k: usize,
) {
    match simd::fast() {
        Some(f) if m > 0 && n > 0 => {
            for row in c[..m * n].chunks_exact_mut(n) {
                row.copy_from_slice(&bias[..n]);
            }
            simd::gemm(f, c, n, m, Lhs::Rows(a, k), &PackedB::from_nk(f, b, n, k));
        }
        _ => reference::matmul_abt_bias(c, a, b, bias, m, n, k),
    }
}

/// `c[i][j] = chain_p(a[i][p] · b[j][p], init = c[i][j])`: adds a·bᵀ onto what c holds (the LSTM's
/// recurrent term onto the input projection). a: m×k, b: n×k, c: m×n.
pub fn matmul_abt_acc(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    match simd::fast() {
        Some(f) => simd::gemm(f, c, n, m, Lhs::Rows(a, k), &PackedB::from_nk(f, b, n, k)),
        None => reference::matmul_abt_acc(c, a, b, m, n, k),
    }
}

/// `c[i][j] = chain_p(a[i][p] · b[p][j], init = c[i][j])`: adds a·b onto what c holds (input
/// gradients dY·W, K over the layer's output rows). a: m×k, b: k×n, c: m×n.
pub fn matmul_ab_acc(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    match simd::fast() {
        Some(f) => simd::gemm(f, c, n, m, Lhs::Rows(a, k), &PackedB::from_kn(f, b, k, n)),
        None => reference::matmul_ab_acc(c, a, b, m, n, k),
    }
}

/// `c[i][j] = chain_p(a[p][i] · b[p][j], init = 0)`: aᵀ·b, the reduction over rows that weight
/// gradients are (K = t·B + b). a: k×m, b: k×n, c: m×n (overwritten).
pub fn matmul_atb(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    match simd::fast() {
        Some(f) => {
            c[..m * n].fill(0.0);
            simd::gemm(f, c, n, m, Lhs::Cols(a, m), &PackedB::from_kn(f, b, k, n));
        }
        None => reference::matmul_atb(c, a, b, m, n, k),
    }
}

/// `c[j] = Σ_p a[p][j]` in ascending p from 0.0, plain adds (bias gradients). a: k×n, c: n
/// (overwritten).
pub fn sum_rows(c: &mut [f32], a: &[f32], k: usize, n: usize) {
    match simd::fast() {
        Some(f) => simd::sum_rows(f, c, a, k, n),
        None => reference::sum_rows(c, a, k, n),
    }
}

/// The plain loops: the specification that every faster path reproduces bit for bit.
pub mod reference {
    /// `c[i][j] = chain_p(a[i][p] · b[j][p], init = bias[j])`: x·Wᵀ + bias with W in PyTorch's
    /// (out × in) layout. a: m×k, b: n×k, bias: n, c: m×n (overwritten).
    pub fn matmul_abt_bias(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        m: usize,
        n: usize,
        k: usize,
    ) {
        for i in 0..m {
            let a_row = &a[i * k..(i + 1) * k];
            for j in 0..n {
                let b_row = &b[j * k..(j + 1) * k];
                let mut acc = bias[j];
                for p in 0..k {
                    acc = a_row[p].mul_add(b_row[p], acc);
                }
                c[i * n + j] = acc;
            }
        }
    }

    /// `c[i][j] = chain_p(a[i][p] · b[j][p], init = c[i][j])`: adds a·bᵀ onto what c holds (the LSTM's
    /// recurrent term onto the input projection). a: m×k, b: n×k, c: m×n.
    pub fn matmul_abt_acc(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
        for i in 0..m {
            let a_row = &a[i * k..(i + 1) * k];
            for j in 0..n {
                let b_row = &b[j * k..(j + 1) * k];
                let mut acc = c[i * n + j];
                for p in 0..k {
                    acc = a_row[p].mul_add(b_row[p], acc);
                }
                c[i * n + j] = acc;
            }
        }
    }

    /// `c[i][j] = chain_p(a[i][p] · b[p][j], init = c[i][j])`: adds a·b onto what c holds (input
    /// gradients dY·W, K over the layer's output rows). a: m×k, b: k×n, c: m×n.
    pub fn matmul_ab_acc(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
        for i in 0..m {
            let c_row = &mut c[i * n..(i + 1) * n];
            // p outside j: each c[i][j] still sees its terms in ascending p, one FMA each.
            for p in 0..k {
                let a_ip = a[i * k + p];
                let b_row = &b[p * n..(p + 1) * n];
                for j in 0..n {
                    c_row[j] = a_ip.mul_add(b_row[j], c_row[j]);
                }
            }
        }
    }

    /// `c[i][j] = chain_p(a[p][i] · b[p][j], init = 0)`: aᵀ·b, the reduction over rows that weight
    /// gradients are (K = t·B + b). a: k×m, b: k×n, c: m×n (overwritten).
    pub fn matmul_atb(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
        c[..m * n].fill(0.0);
        // p outermost: every c[i][j] still receives its terms in ascending p, one FMA each.
        for p in 0..k {
            let a_row = &a[p * m..(p + 1) * m];
            let b_row = &b[p * n..(p + 1) * n];
            for i in 0..m {
                let c_row = &mut c[i * n..(i + 1) * n];
                for j in 0..n {
                    c_row[j] = a_row[i].mul_add(b_row[j], c_row[j]);
                }
            }
        }
    }

    /// `c[j] = Σ_p a[p][j]` in ascending p from 0.0, plain adds (bias gradients). a: k×n, c: n
    /// (overwritten).
    pub fn sum_rows(c: &mut [f32], a: &[f32], k: usize, n: usize) {
        c[..n].fill(0.0);
        for p in 0..k {
            for j in 0..n {
                c[j] += a[p * n + j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_products_by_hand() {
        for isa in simd::supported_isas() {
            simd::with_isa(isa, small_products_by_hand_on);
        }
    }

    fn small_products_by_hand_on() {
        // a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]].
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        matmul_abt_bias(&mut c, &a, &b, &[0.5, -1.0], 2, 2, 2);
        // a·bᵀ = [[17, 23], [39, 53]], plus the bias per column.
        assert_eq!(c, [17.5, 22.0, 39.5, 52.0]);
        let mut c = [1.0; 4];
        matmul_abt_acc(&mut c, &a, &b, 2, 2, 2);
        assert_eq!(c, [18.0, 24.0, 40.0, 54.0]);
        let mut c = [1.0; 4];
        // a·b = [[19, 22], [43, 50]].
        matmul_ab_acc(&mut c, &a, &b, 2, 2, 2);
        assert_eq!(c, [20.0, 23.0, 44.0, 51.0]);
        let mut c = [9.0; 4];
        // aᵀ·b = [[26, 30], [38, 44]].
        matmul_atb(&mut c, &a, &b, 2, 2, 2);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
        let mut s = [9.0; 2];
        sum_rows(&mut s, &a, 2, 2);
        assert_eq!(s, [4.0, 6.0]);
        // Non-square: a (1×3) · bᵀ with b (2×3).
        let mut c = [0.0; 2];
        matmul_abt_bias(
            &mut c,
            &[1.0, 2.0, 3.0],
            &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            &[0.0, 0.0],
            1,
            2,
            3,
        );
        assert_eq!(c, [4.0, 2.0]);
    }

    /// The order is part of the result: [2²⁴, 1, −2²⁴] gives 0 left to right (2²⁴ + 1 rounds back
    /// to 2²⁴) and 1 in any order that does not add the 1 to 2²⁴ first; a fused product keeps a
    /// term that separate rounding of the product would lose.
    #[test]
    fn chains_are_fused_and_in_ascending_k() {
        for isa in simd::supported_isas() {
            simd::with_isa(isa, chains_are_fused_and_in_ascending_k_on);
        }
    }

    fn chains_are_fused_and_in_ascending_k_on() {
        let big = 16_777_216.0f32; // 2²⁴
        // [2²⁴, 1, −2²⁴] · [1, 1, 1] from 0: 2²⁴ + 1 rounds to 2²⁴, then − 2²⁴ = 0.
        let mut c = [0.0];
        matmul_abt_bias(&mut c, &[big, 1.0, -big], &[1.0, 1.0, 1.0], &[0.0], 1, 1, 3);
        assert_eq!(c, [0.0]);
        // The same terms in other orders give 1: −2²⁴ + 1 is exact, as is 2²⁴ − 2²⁴.
        matmul_abt_bias(&mut c, &[-big, 1.0, big], &[1.0, 1.0, 1.0], &[0.0], 1, 1, 3);
        assert_eq!(c, [1.0]);
        matmul_abt_bias(&mut c, &[big, -big, 1.0], &[1.0, 1.0, 1.0], &[0.0], 1, 1, 3);
        assert_eq!(c, [1.0]);
        // Fused: (1 + 2⁻¹²)² − (1 + 2⁻¹¹) = 2⁻²⁴ exactly with FMA, 0 if the product were rounded.
        let x = 1.0 + f32::powi(2.0, -12);
        let mut c = [0.0];
        matmul_abt_bias(&mut c, &[x], &[x], &[-(1.0 + f32::powi(2.0, -11))], 1, 1, 1);
        assert_eq!(c, [f32::powi(2.0, -24)]);
        for f in [matmul_ab_acc, matmul_abt_acc] {
            let mut c = [-(1.0 + f32::powi(2.0, -11))];
            f(&mut c, &[x], &[x], 1, 1, 1);
            assert_eq!(c, [f32::powi(2.0, -24)]);
        }
        // aᵀ·b over rows: 2²⁴·1, then +1 (lost), then −2²⁴.
        let mut c = [0.0];
        matmul_atb(&mut c, &[big, 1.0, -big], &[1.0, 1.0, 1.0], 1, 1, 3);
        assert_eq!(c, [0.0]);
        let mut s = [0.0];
        sum_rows(&mut s, &[big, 1.0, -big], 3, 1);
        assert_eq!(s, [0.0]);
        sum_rows(&mut s, &[big, -big, 1.0], 3, 1);
        assert_eq!(s, [1.0]);
    }
}
