//! Backups of the store while the server runs: `create` (consistent snapshot, zstd,
//! incremental), `verify`, `restore`, and the catalog (`list`, `prune`).
//!
//! A backup is a directory named by its id (the UTC time it was taken) holding
//! `manifest.json` and, compressed, each file it is the first to hold. Its manifest
//! lists every file the store needs — the database copy, the pack files up to what the
//! copy names, the config, TLS pair, admin token and signatures — each with its size,
//! SHA-256 and the backup (this one or an earlier one) that holds its bytes. A later
//! backup stores only what changed: packs are append-only, so a pack the chain already
//! holds at the same length is not copied again.

pub mod catalog;
pub mod create;
pub mod manifest;
pub mod priority;
pub mod restore;
