//! Integration tests of the x402 crate, on the embedded chain with the contracts
//! deployed: every refusal of verify and settle with its reason, settlement once and
//! only once (re-settles, restarts, concurrency), the HTTP API, and the real Python
//! x402 clients (the official Flask seller middleware and the requests buyer) paying
//! and settling through our facilitator; and the x402 seller of an agent's services,
//! paid by our own requests and by the real Python client.

mod buyer;
mod facilitator;
mod interop;
mod seller;
mod support;
