//! Enumerations shared by the operations.

use xent_sys as sys;

/// How per-row losses are reduced to the returned loss (`xent_reduction`).
/// Each operation documents its divisor for [`Reduction::Mean`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// No reduction: the per-row outputs are what matter; the returned loss
    /// is the sum, and gradients are those of the sum.
    None,
    /// Mean (the default of every operation).
    Mean,
    /// Sum.
    Sum,
    /// Sum divided by the number of rows (KL/JSD and BCE only).
    BatchMean,
}

impl Reduction {
    /// The C `xent_reduction` value.
    pub fn code(self) -> i32 {
        match self {
            Reduction::None => sys::XENT_REDUCTION_NONE,
            Reduction::Mean => sys::XENT_REDUCTION_MEAN,
            Reduction::Sum => sys::XENT_REDUCTION_SUM,
            Reduction::BatchMean => sys::XENT_REDUCTION_BATCHMEAN,
        }
    }
}

/// How a distribution is given (`xent_dist_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistKind {
    /// Unnormalized logits: `softmax(x / temperature)`.
    Logits,
    /// Log-probabilities, used as given.
    LogProbs,
    /// Probabilities, used as given.
    Probs,
}

impl DistKind {
    /// The C `xent_dist_kind` value.
    pub fn code(self) -> i32 {
        match self {
            DistKind::Logits => sys::XENT_DIST_LOGITS,
            DistKind::LogProbs => sys::XENT_DIST_LOG_PROBS,
            DistKind::Probs => sys::XENT_DIST_PROBS,
        }
    }
}
