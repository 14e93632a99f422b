//! An axum router served on a socket, for tests and standalone use: the facilitator
//! ([`crate::facilitator::serve`]) and the seller ([`crate::seller::serve`]).

use std::net::SocketAddr;

use axum::Router;

use crate::{Error, Result};

/// A router serving on a socket; stops when shut down or dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `router` on `listen` (port 0 picks a free one).
    ///
    /// # Errors
    /// [`Error::Io`] when the address cannot be bound.
    pub(crate) async fn spawn(router: Router, listen: SocketAddr) -> Result<Self> {
        let io = |what, source| Error::Io {
            what,
            addr: listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| io("binding", e))?;
        let addr = listener.local_addr().map_err(|e| io("binding", e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::error!(target: "x402::server", error = %e, "server stopped");
            }
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
