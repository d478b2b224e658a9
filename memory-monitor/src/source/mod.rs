//! Where the monitor learns which processes exist and when to look at their memory.
//!
//! [`poll`] scans `/proc` every interval and works everywhere.

pub mod poll;
