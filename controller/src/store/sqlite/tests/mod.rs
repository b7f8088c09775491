//! The SQLite store's tests, one module per area as in the store itself,
//! on shared [`fixtures`]. They run against an in-memory database, or a
//! temporary file when two connections must race (enrollment, quota,
//! ports) the way two colocd processes would.

mod alerts;
mod apps;
mod audit;
mod credentials;
mod fixtures;
mod node_lifecycle;
mod nodes;
mod schema;
mod storage;
mod tenancy;
