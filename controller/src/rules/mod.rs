//! The cooperative's rules about tenants' membership, storage and apps,
//! users and their credentials, as plain functions.
//!
//! Each rule takes the facts it needs (a tenant's quota and usage, the
//! ports in use on a node, a request's state, a volume's lifecycle) and
//! answers with a decision or a typed refusal whose text is the reason a
//! person reads. A store backend reads those facts inside its transaction,
//! calls the rule and writes the result, so the transaction keeps the
//! decision atomic and every backend (SQLite today, PostgreSQL later)
//! applies the same rule. Rules do no I/O and know nothing about SQL;
//! they are tested here without a database. They read the store's
//! records and constants; the store's traits know nothing of them, only
//! its backends call them.
//!
//! What is a rule and what is storage: uniqueness (one volume name per
//! tenant, one live instance per tenant and app) is a constraint the
//! database enforces with its indexes, and stays in the store; the
//! arithmetic and state transitions people decide on live here.
//!
//! Layout: [`quota`] (whether a change to a tenant's volumes fits its
//! quota), [`volumes`] (a volume's lifecycle, resize, snapshots, purge
//! due), [`ports`] (the local port of a new instance), [`requests`] (an
//! install request's decision), [`instances`] (what people's changes
//! and nodes' reports do to an app instance), [`standing`] (an
//! association's membership phase, its suspension, and the notices its
//! users read), [`users`] (roles and tenants, the last enabled admin),
//! [`credentials`] (a credential's lifetime under the one that minted it),
//! [`orphans`] (what a removed node's volumes and instances still accept)
//! and [`certs`] (when a certificate is renewed, which node certificate
//! opens a session).

pub mod certs;
pub mod credentials;
pub mod instances;
pub mod orphans;
pub mod ports;
pub mod quota;
pub mod requests;
pub mod standing;
pub mod users;
pub mod volumes;
