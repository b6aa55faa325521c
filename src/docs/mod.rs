//! Documentation only: no code lives here.

pub mod go_names;
pub mod performance;
pub mod reclamation;
