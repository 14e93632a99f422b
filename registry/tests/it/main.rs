//! Integration tests of the registry crate: the embedded devnet and the contracts on it.

/// Two tests of `$body(&node, dir)`, an `async fn(&Node, &Path)`: `$devnet` on the
/// embedded devnet and `$anvil` on anvil, each with a fresh temporary folder.
macro_rules! on_devnet_and_anvil {
    ($devnet:ident, $anvil:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $devnet() {
            let dir = tempfile::tempdir().unwrap();
            let node = crate::support::embedded(&dir.path().join("chain")).await;
            $body(&node, dir.path()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $anvil() {
            let dir = tempfile::tempdir().unwrap();
            let node = crate::support::anvil().await;
            $body(&node, dir.path()).await;
        }
    };
}

mod cast;
mod channel;
mod devnet;
mod discovery;
mod erc8004;
mod escrow;
mod oracle;
mod proxy;
mod support;
