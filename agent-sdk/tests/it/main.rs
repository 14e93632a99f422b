//! Integration tests of the runtime through the SDK: real hosts, real sockets on
//! loopback, real child processes.

mod clock;
mod connections;
mod envelopes;
mod flood;
mod local;
mod process;
#[cfg(feature = "registry")]
mod registry;
mod remote;
mod support;
