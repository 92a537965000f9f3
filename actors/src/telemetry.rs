//! What the engine tells operators: Prometheus metrics (`metrics`) and each Page's figures for the portal
//! (`stats`).

pub mod metrics;
pub mod stats;
