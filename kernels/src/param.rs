//! A model's parameter tensor, in a module of its own so that the optimiser and the model can
//! both name it without importing each other.

/// A named parameter tensor, flat row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}
