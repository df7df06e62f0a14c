//! Complete pipelines built from the operator library.

pub mod keycount;
