//! End-to-end tests: the real `cxdb` binary on port 0, real clients (tonic,
//! arrow-flight, HTTP, tokio-postgres, psql). One test binary (see
//! STYLE.md); modules by topic.

mod server;

mod admin;
mod auth;
mod cli;
mod errors;
mod exports;
mod flightsql;
mod ingest;
mod limits;
mod pgwire;
mod tls;
mod views;
