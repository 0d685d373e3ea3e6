//! Reports: pure functions of the run's results (and of each case as it
//! finishes, for the console).

pub mod console;
pub mod junit;
