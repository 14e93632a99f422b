//! Integration tests of the runtime's routing and refusals: real hosts, real
//! sockets on loopback, real wallets, and bare WebSocket clients that play relays
//! and attackers.

mod clock;
mod expiry;
mod reconnect;
mod refusals;
mod routes;
mod support;
