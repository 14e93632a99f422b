//! The seller's HTTP edge: one axum [`Router`] with `POST /x402/{skill}`, to merge
//! into the agent host's edge or serve alone ([`serve`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;

use super::{Outcome, X402Seller};
use crate::server::HttpServer;
use crate::wire::{
    self, ATTESTATION_HEADER, PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
};
use crate::Result;

/// A seller serving on a socket; stops when shut down or dropped.
pub type SellerServer = HttpServer;

/// The seller's routes: `POST /x402/{skill}` for each skill it sells (other
/// methods get `405`), with request bodies capped at
/// [`SellerConfig::max_body_bytes`](super::SellerConfig::max_body_bytes).
pub fn router(seller: Arc<X402Seller>) -> Router {
    let limit = seller.max_body_bytes();
    Router::new()
        .route("/x402/:skill", post(sell))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(seller)
}

/// Serves [`router`] of `seller` on `listen` (port 0 picks a free one).
///
/// # Errors
/// [`crate::Error::Io`] when the address cannot be bound.
pub async fn serve(seller: Arc<X402Seller>, listen: SocketAddr) -> Result<SellerServer> {
    let server = HttpServer::spawn(router(seller.clone()), listen).await?;
    tracing::info!(target: "x402::seller", addr = %server.addr(), network = %seller.network(),
        pay_to = %seller.pay_to(), "x402 seller listening");
    Ok(server)
}

async fn sell(
    State(seller): State<Arc<X402Seller>>,
    Path(skill): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            return error_response(
                status,
                "invalid_body",
                &format!(
                    "reading the request body (at most {} bytes): {e}",
                    seller.max_body_bytes()
                ),
                None,
            );
        }
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let payment = headers
        .get(PAYMENT_SIGNATURE_HEADER)
        .map(HeaderValue::as_bytes);
    let outcome = seller.handle(&skill, host, payment, &body).await;
    respond(outcome)
}

/// Writes an [`Outcome`] as the x402 clients read it.
pub(crate) fn respond(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Served {
            body,
            settled,
            attestation,
        } => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            add_header(&mut response, PAYMENT_RESPONSE_HEADER, &settled);
            if let Some(attestation) = &attestation {
                add_header(&mut response, ATTESTATION_HEADER, attestation);
            }
            response
        }
        Outcome::PaymentRequired { required, invalid } => {
            let mut doc = serde_json::to_value(&required).unwrap_or_else(|_| json!({}));
            if let (Some(invalid), Some(o)) = (&invalid, doc.as_object_mut()) {
                o.insert("invalidMessage".into(), json!(invalid.message));
            }
            let mut response = (StatusCode::PAYMENT_REQUIRED, axum::Json(doc)).into_response();
            add_header(&mut response, PAYMENT_REQUIRED_HEADER, &required);
            response
        }
        Outcome::Refused {
            status,
            error,
            message,
            settled,
        } => error_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error,
            &message,
            settled.as_ref(),
        ),
    }
}

fn error_response(
    status: StatusCode,
    error: &str,
    message: &str,
    settled: Option<&wire::SettleResponse>,
) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(settled) = settled {
        add_header(&mut response, PAYMENT_RESPONSE_HEADER, settled);
    }
    response
}

fn add_header<T: serde::Serialize>(response: &mut Response, name: &'static str, value: &T) {
    match wire::encode_header(value).map(HeaderValue::try_from) {
        Ok(Ok(v)) => {
            response.headers_mut().insert(name, v);
        }
        _ => tracing::error!(target: "x402::seller", header = name, "a header does not encode"),
    }
}
