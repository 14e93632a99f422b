//! Integration tests of the runtime's routing, refusals and HTTP edge: real hosts,
//! real sockets on loopback, real wallets, and bare WebSocket and HTTP clients that
//! play relays and attackers.

mod clock;
mod expiry;
mod http;
mod metrics;
mod reconnect;
mod refusals;
mod routes;
mod support;
