//! A TCP forwarder that can be cut: the way to take Postgres (or anything else) "down" for one service
//! while the real server keeps running for the rest of the test suite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    port: u16,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    stall: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards a free local port to `target`, starting in the "up" state.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let (stall, _) = watch::channel(0u64);
        let task = {
            let up = up.clone();
            let generation = generation.clone();
            let stall = stall.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::Acquire) {
                        drop(client);
                        continue;
                    }
                    let mut cut = generation.subscribe();
                    let mut stalled = stall.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => return,
                            _ = stalled.changed() => {}
                        }
                        // Stalled: both sockets stay open and nothing moves, like a peer that
                        // vanished without a reset, until the proxy cuts everything.
                        let _ = cut.changed().await;
                        drop((client, server));
                    });
                }
            })
        };
        TcpProxy {
            port,
            up,
            generation,
            stall,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding on every open connection while keeping it open (a peer gone silent, no reset);
    /// new connections are forwarded as usual.
    pub fn stall_open_connections(&self) {
        self.stall.send_modify(|g| *g += 1);
    }

    /// Down: cuts every open connection and refuses new ones. Up: forwards again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        if !up {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
