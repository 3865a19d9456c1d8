//! Firmware update (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5): the packages the server
//! hosts, and the campaigns that bring them to devices.
//!
//! - [`packages`]: the package store: content-addressed files under `data_dir`, their
//!   metadata in the store, the bytes served for pull downloads and pushed for push.
//! - [`campaigns`]: update campaigns: each target device through download, update and
//!   result, a bounded number at a time.
//! - [`targets`]: which devices may download which package while a campaign runs.
pub mod campaigns;
pub mod packages;
pub mod targets;
