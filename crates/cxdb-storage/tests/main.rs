//! Integration tests of the storage engine on the real object_store file
//! backend in temp dirs. One test binary (see STYLE.md); modules by topic.

mod common;
mod crash;
mod durability;
mod ingest;
mod lake;
