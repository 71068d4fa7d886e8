//! DKIM signing (RFC 6376) of mail users send through submission: the keys (one
//! active selector per domain, generated here, files 0600 under `data_dir/dkim/`), and
//! the signer set the submission listener signs with, swapped whole when a key changes
//! (no restart). Signing and verification are the `mail-auth` crate's.

pub mod keys;
pub mod signer;

pub use keys::{Algorithm, KeyInfo, KeyStore};
pub use signer::Signers;
