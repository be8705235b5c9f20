//! A WebSocket client of the reader's `/v1/ws`, as the tests and the realtime bench use it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use schemas::realtime::{ClientFrame, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What came off the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Frame(ServerFrame),
    /// The server closed with this code (`None`: without a close frame).
    Closed(Option<u16>),
    /// Nothing within the wait.
    Nothing,
}

pub struct WsClient {
    pub socket: Socket,
}

impl WsClient {
    /// Connects as `token`'s user with `device`; `query` is appended (e.g. `&after=5`). The HTTP error
    /// of a refused handshake is returned as its status.
    pub async fn connect(
        reader: &str,
        token: &str,
        device: &str,
        query: &str,
    ) -> Result<WsClient, u16> {
        let url = format!(
            "{}/v1/ws?device={device}{query}",
            reader.replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().map_err(|_| 0u16)?;
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(WsClient { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(_) => Err(0),
        }
    }

    /// Connects without a token in the request (as the web page does) and sends `first` as the first
    /// frame: normally `{"type": "auth", "access_token": …}`.
    pub async fn connect_then(reader: &str, device: &str, first: &str) -> Result<WsClient, u16> {
        let url = format!("{}/v1/ws?device={device}", reader.replacen("http", "ws", 1));
        let mut client = match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => WsClient { socket },
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                return Err(response.status().as_u16())
            }
            Err(_) => return Err(0),
        };
        if !first.is_empty() {
            let _ = client.socket.send(Message::text(first)).await;
        }
        Ok(client)
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        let text = serde_json::to_string(frame).expect("frames serialize");
        let _ = self.socket.send(Message::text(text)).await;
    }

    /// The next server frame (protocol pings answered by tungstenite itself are skipped).
    pub async fn next(&mut self, wait: Duration) -> Received {
        loop {
            match tokio::time::timeout(wait, self.socket.next()).await {
                Err(_) => return Received::Nothing,
                Ok(None) => return Received::Closed(None),
                Ok(Some(Err(_))) => return Received::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: ServerFrame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|err| panic!("not a server frame ({err}): {text}"));
                    return Received::Frame(frame);
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame that is not a heartbeat ping (answered) or pong.
    pub async fn next_data(&mut self, wait: Duration) -> Received {
        loop {
            match self.next(wait).await {
                Received::Frame(ServerFrame::Ping) => self.send(&ClientFrame::Pong).await,
                Received::Frame(ServerFrame::Pong) => {}
                other => return other,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
