//! `nn.Linear`: y = x·Wᵀ + b with W in PyTorch's (out × in) layout, forward and backward side by
//! side.
//!
//! - forward: `y[n][o] = chain_k(x[n][k] · W[o][k], init = b[o])`;
//! - backward: `dx[n][k] = chain_o(dy[n][o] · W[o][k], init = 0)`,
//!   `dW[o][k] = chain_n(dy[n][o] · x[n][k], init = 0)` over the rows n ascending,
//!   `db[o] = Σ_n dy[n][o]` (plain adds, ascending n, from 0).

use crate::{Error, Result, check_input, check_len, gemm};

/// A layer's weights: `w` (output × input), `b` (output).
#[derive(Debug, Clone, Copy)]
pub struct LinearWeights<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub input: usize,
    pub output: usize,
}

impl LinearWeights<'_> {
    fn check(&self) -> Result<()> {
        if self.input == 0 || self.output == 0 {
            return Err(Error::Config(
                "a linear layer needs input and output sizes ≥ 1".into(),
            ));
        }
        check_len("linear weight", self.w, self.output * self.input)?;
        check_len("linear bias", self.b, self.output)
    }
}

/// The gradients of one backward call.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub x: Vec<f32>,
}

/// y (rows × output) for x (rows × input).
pub fn forward(lin: LinearWeights<'_>, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    lin.check()?;
    if rows == 0 {
        return Err(Error::Empty("linear input has no rows".into()));
    }
    check_input("linear input", x, rows * lin.input)?;
    Ok(forward_unchecked(lin, x, rows))
}

/// Backward of [`forward`] for the output gradient `dy` (rows × output).
pub fn backward(lin: LinearWeights<'_>, x: &[f32], dy: &[f32], rows: usize) -> Result<LinearGrads> {
    lin.check()?;
    if rows == 0 {
        return Err(Error::Empty("linear input has no rows".into()));
    }
    check_input("linear input", x, rows * lin.input)?;
    check_input("linear output gradient", dy, rows * lin.output)?;
    let (w, b) = param_grads(lin, x, dy, rows);
    Ok(LinearGrads {
        w,
        b,
        x: input_grad(lin, dy, rows),
    })
}

pub(crate) fn forward_unchecked(lin: LinearWeights<'_>, x: &[f32], rows: usize) -> Vec<f32> {
    let mut y = vec![0.0; rows * lin.output];
    gemm::matmul_abt_bias(&mut y, x, lin.w, lin.b, rows, lin.output, lin.input);
    y
}

/// dx = dy·W, each element a chain over the outputs from 0.
pub(crate) fn input_grad(lin: LinearWeights<'_>, dy: &[f32], rows: usize) -> Vec<f32> {
    let mut dx = vec![0.0; rows * lin.input];
    gemm::matmul_ab_acc(&mut dx, dy, lin.w, rows, lin.input, lin.output);
    dx
}

/// (dW, db): reductions over the rows in ascending order. A head applied at several decoder
/// steps passes all its rows at once (row = step·B + b), so each element is one chain.
pub(crate) fn param_grads(
    lin: LinearWeights<'_>,
    x: &[f32],
    dy: &[f32],
    rows: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0.0; lin.output * lin.input];
    gemm::matmul_atb(&mut dw, dy, x, lin.output, lin.input, rows);
    let mut db = vec![0.0; lin.output];
    gemm::sum_rows(&mut db, dy, rows, lin.output);
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, dot, values};

    #[test]
    fn forward_and_backward_by_hand() {
        // W = [[1, 2], [3, 4], [5, 6]], b = [0.5, 0, −1]; x = [[1, −1], [2, 0.5]].
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [0.5, 0.0, -1.0];
        let lin = LinearWeights {
            w: &w,
            b: &b,
            input: 2,
            output: 3,
        };
        let x = [1.0, -1.0, 2.0, 0.5];
        let y = forward(lin, &x, 2).unwrap();
        assert_eq!(y, [-0.5, -1.0, -2.0, 3.5, 8.0, 12.0]);
        let dy = [1.0, 0.0, 2.0, 0.0, 1.0, -1.0];
        let g = backward(lin, &x, &dy, 2).unwrap();
        // dx = dy·W: [1·[1,2] + 2·[5,6]] = [11, 14]; [[3,4] − [5,6]] = [−2, −2].
        assert_eq!(g.x, [11.0, 14.0, -2.0, -2.0]);
        // dW = dyᵀ·x: row o = Σ_n dy[n][o]·x[n].
        assert_eq!(g.w, [1.0, -1.0, 2.0, 0.5, 0.0, -2.5]);
        assert_eq!(g.b, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (rows, input, output) = (5, 4, 3);
        let w = values(1, output * input, 0.5);
        let b = values(2, output, 0.5);
        let x = values(3, rows * input, 1.0);
        let wy = values(4, rows * output, 1.0);
        let lin = LinearWeights {
            w: &w,
            b: &b,
            input,
            output,
        };
        let g = backward(lin, &x, &wy, rows).unwrap();
        let obj = |w: &[f32], b: &[f32], x: &[f32]| {
            let l = LinearWeights {
                w,
                b,
                input,
                output,
            };
            dot(&wy, &forward(l, x, rows).unwrap())
        };
        check_grad("linear dW", &w, &g.w, 1e-2, 1e-3, |p| obj(p, &b, &x));
        check_grad("linear db", &b, &g.b, 1e-2, 1e-3, |p| obj(&w, p, &x));
        check_grad("linear dx", &x, &g.x, 1e-2, 1e-3, |p| obj(&w, &b, p));
    }

    #[test]
    fn bad_input_is_an_error() {
        let w = [1.0; 6];
        let b = [0.0; 3];
        let lin = LinearWeights {
            w: &w,
            b: &b,
            input: 2,
            output: 3,
        };
        assert!(matches!(forward(lin, &[], 0), Err(Error::Empty(_))));
        assert!(matches!(
            forward(lin, &[1.0; 3], 2),
            Err(Error::Shape {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert!(matches!(
            forward(lin, &[1.0, f32::NAN, 0.0, 0.0], 2),
            Err(Error::NonFinite { index: 1, .. })
        ));
        let short = LinearWeights { w: &w[..5], ..lin };
        assert!(matches!(
            forward(short, &[1.0; 4], 2),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            backward(lin, &[1.0; 4], &[1.0; 5], 2),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            backward(lin, &[1.0; 4], &[f32::INFINITY; 6], 2),
            Err(Error::NonFinite { .. })
        ));
    }
}
