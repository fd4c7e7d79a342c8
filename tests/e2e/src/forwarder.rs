//! A TCP forwarder on 127.0.0.1 that can cut the connection to the API
//! server, to simulate an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};

/// Forwards every connection to `target` until [`Forwarder::cut`], then
/// closes open connections and new ones at once until
/// [`Forwarder::restore`]. Runs on the Tokio runtime of the test that
/// starts it.
pub struct Forwarder {
    address: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    acceptor: JoinHandle<()>,
}

impl Forwarder {
    /// Starts forwarding from a free port on 127.0.0.1 to `target`
    /// (`host:port`).
    ///
    /// # Panics
    ///
    /// Panics when no port can be bound.
    pub async fn start(target: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the forwarder on 127.0.0.1");
        let address = listener
            .local_addr()
            .expect("forwarder address")
            .to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(JoinSet::new()));

        let (is_cut, tasks) = (cut.clone(), connections.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut downstream, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    // Dropping the accepted stream closes it.
                    continue;
                }
                let target = target.clone();
                tasks.lock().await.spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                    }
                });
            }
        });

        Forwarder {
            address,
            cut,
            connections,
            acceptor,
        }
    }

    /// Listening address, `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Closes every forwarded connection and every new one.
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}
