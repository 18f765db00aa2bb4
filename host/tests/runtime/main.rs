//! Host runtime tests: real wasmtime, real components, misbehaving fixtures,
//! and the capabilities against real Redis, PostgreSQL, SQLite and HTTP.

mod helpers;

mod capabilities_real;
mod egress;
mod hostile;
mod logging;
mod misbehaving;
mod slots;
mod sql_escapes;
