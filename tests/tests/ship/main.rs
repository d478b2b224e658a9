//! What ships and how it runs: the static binary, the .deb, the container image, the
//! Kubernetes manifests, the systemd units (and the packaged one run by systemd), and
//! hardening once started.
//!
//! Tests that need root are ignored without it; `cargo xtask test` runs them (as root, with
//! `--include-ignored`).

mod deploy;
mod harden;
mod image;
mod service;
mod shipped;
mod systemd;
