//! The cxdb gRPC API, package `cxdb.v1` (`proto/cxdb/v1/*.proto`): event
//! ingest, SQL queries streaming Arrow IPC, and administration.

#![allow(unreachable_pub, clippy::all)]

pub mod v1 {
    tonic::include_proto!("cxdb.v1");
}

/// The encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cxdb_descriptor");
