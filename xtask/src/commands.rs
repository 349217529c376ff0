//! The commands that run pipeline steps alone: `fetch`, `build`, `wire`,
//! `unwire`.

pub mod build;
pub mod fetch;
pub mod unwire;
pub mod wire;
