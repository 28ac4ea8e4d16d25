//! Everything that makes logveil's output safe to hand out: keys, pseudonyms, sanitising,
//! generalisation, and the policy model.
//!
//! - [`KeyRing`] reads root keys; [`Pseudonymizer`] derives purpose-bound subkeys and turns
//!   raw identifiers into [`Pseudonym`]s (keyed BLAKE3, canonical encoding documented in
//!   [`pseudonym`]).
//! - [`Pseudonymizer::event`] converts a borrowed `LogRecord` into an [`Event`], the only
//!   record type that travels further down the pipeline; it holds no raw identifier.
//! - [`sanitize`] reduces free text to what reports may carry: [`Page`], [`ReferrerDomain`], a bot flag.
//! - [`classify`] reduces the user agent to the bot flag, a [`DeviceClass`] and a [`BrowserFamily`]
//!   (static, table-driven, no allocation).
//! - [`generalize`] maps quasi-identifiers to coarse values (age band, gender, occupation,
//!   industry, interests); [`area`] maps Japanese postal codes to prefectures.
//! - [`Policy`] declares purposes and audiences; the pipeline checks every report against it.
//! - [`audit`] is the hash-chained log of re-identification lookups (`logveil lookup`).
//! - [`chain`] holds the hash-chained JSON-lines format the audit log and the privacy ledgers share.
//! - [`wire`] is the versioned binary encoding of event batches (edge → aggregator).

pub mod area;
pub mod audit;
pub mod chain;
pub mod classify;
pub mod client;
mod event;
pub mod generalize;
pub mod keys;
pub mod policy;
pub mod pseudonym;
pub mod redact;
pub mod sanitize;
pub mod secrets;
#[cfg(test)]
mod test_keys;
pub mod wire;

pub use classify::{BrowserFamily, DeviceClass, UaClass, classify};
pub use event::{Event, Method};
pub use keys::{KeyError, KeyId, KeyRing, RootKey};
pub use policy::{
    Audience, AudienceCellKey, AudienceDp, ConsentColumn, Dimension, Policy, PolicyError, Purpose,
};
pub use pseudonym::{Pseudonym, Pseudonymizer};
pub use sanitize::{Page, ReferrerDomain};
