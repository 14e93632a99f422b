//! Integration tests of the A2A gateway: an agent served on a host's HTTP edge, called
//! by the real A2A Python client and by hand-made bad requests, and its tasks across a
//! restart.

mod gateway;
mod interop;
mod market;
mod paid;
mod support;
