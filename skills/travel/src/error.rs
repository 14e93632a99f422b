//! The travel crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in planning a trip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request cannot be planned (it names no destination, for example).
    #[error("invalid travel request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },

    /// The model failed, or its output does not fit the trip's shape.
    #[error(transparent)]
    Llm(#[from] llm::Error),

    /// A forecast query or the city list failed (a trip window past the calendar,
    /// an unknown city).
    #[error(transparent)]
    Weather(#[from] weather::Error),

    /// Hiring the weather agent failed: no seller, a refused payment, a broken deal.
    #[cfg(feature = "hire")]
    #[error(transparent)]
    Hire(Box<negotiation::Error>),

    /// The hired weather agent delivered something that is not a forecast of the
    /// trip's days.
    #[cfg(feature = "hire")]
    #[error("weather agent {peer} in dialogue {dialogue}: {reason}")]
    BadForecast {
        /// The deal's dialogue.
        dialogue: wallets::B256,
        /// The weather agent.
        peer: wallets::Address,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying with another seller cannot help: the request itself is bad,
    /// or the spending policy refused the payment.
    #[must_use]
    pub fn is_final(&self) -> bool {
        match self {
            Self::InvalidRequest { .. } => true,
            #[cfg(feature = "hire")]
            Self::Hire(e) => e.is_final(),
            _ => false,
        }
    }
}

#[cfg(feature = "hire")]
impl From<negotiation::Error> for Error {
    fn from(e: negotiation::Error) -> Self {
        Self::Hire(Box::new(e))
    }
}
