//! Firmware update (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5): the packages the server
//! hosts, and the campaigns that bring them to devices.
//!
//! - [`packages`]: the package store: content-addressed files under `data_dir`, their
//!   metadata in the store, the bytes served for pull downloads and pushed for push.
pub mod packages;
