//! One client connection: the frontend's messages are cut from the socket by their length,
//! checked, and only then decoded by pgwire and handed to its dispatcher.
//!
//! pgwire's own loop (`process_socket`) decodes straight from the socket's buffer and trusts
//! each length field: a message claiming fewer than 4 bytes underflows `len - 4` (a panic in
//! pgwire 0.41), and a body decoder that reads to a NUL can run on into the next message. Here
//! every message is framed first, refused with a FATAL `08P01` (as PostgreSQL refuses "invalid
//! message length") when its length cannot be, and decoded alone, so it can neither panic on
//! its length nor read past itself.
//!
//! Encryption requests are refused (the server speaks plain TCP), as pgwire does without a TLS
//! acceptor; a client that then asks again is closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::SinkExt;
use pgwire::api::PgWireServerHandlers;
use pgwire::api::{ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Framed};

/// A client must have logged in this long after connecting (pgwire's and PostgreSQL's
/// `authentication_timeout` is a minute).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest startup-phase packet, as PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
const MAX_STARTUP_LEN: usize = 10_000;
/// The largest message after startup, as PostgreSQL's `PQ_LARGE_MESSAGE_LIMIT` (1 GiB - 1).
const MAX_MESSAGE_LEN: usize = 0x3fff_fffe;
/// What is read ahead of a long message at a time: a length field alone reserves nothing big.
const READ_CHUNK: usize = 64 * 1024;

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSS_ENC_REQUEST_CODE: i32 = 80_877_104;

/// Serves one client until it leaves, breaks the protocol or its socket fails.
pub async fn serve<H: PgWireServerHandlers>(
    tcp: TcpStream,
    peer: SocketAddr,
    handlers: H,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut socket = Framed::new(
        tcp,
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    // Encryption requests are answered here, so pgwire's decoder starts at the startup packet.
    socket.set_state(PgWireConnectionState::AwaitingStartup);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();

    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let mut read = BytesMut::new();
    let mut refused = Refused::default();
    loop {
        let untyped = matches!(socket.state(), PgWireConnectionState::AwaitingStartup);
        let frame = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                () = &mut startup_timeout => return Ok(()),
                frame = next_frame(socket.get_mut(), &mut read, untyped) => frame,
            }
        } else {
            next_frame(socket.get_mut(), &mut read, untyped).await
        };
        let mut frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(Violation::Io(e)) => return Err(e),
            Err(Violation::Protocol(why)) => return refuse(&mut socket, why).await,
        };
        if untyped {
            match (&frame[4..8]).get_i32() {
                SSL_REQUEST_CODE if !refused.ssl => {
                    refused.ssl = true;
                    socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Refuse))
                        .await?;
                    continue;
                }
                GSS_ENC_REQUEST_CODE if !refused.gss => {
                    refused.gss = true;
                    socket
                        .send(PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse))
                        .await?;
                    continue;
                }
                SSL_REQUEST_CODE | GSS_ENC_REQUEST_CODE => {
                    return refuse(&mut socket, "encryption was already refused".into()).await;
                }
                _ => {}
            }
        }
        let message = match socket.codec_mut().decode(&mut frame) {
            Ok(Some(message)) => message,
            Ok(None) => return refuse(&mut socket, "incomplete message".into()).await,
            Err(e) => return refuse(&mut socket, format!("invalid message: {e}")).await,
        };
        // Terminate: the client leaves and waits for the socket to close (asyncpg does).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_query).await?;
        }
    }
}

/// Which encryption requests were refused: each is answered once.
#[derive(Default)]
struct Refused {
    ssl: bool,
    gss: bool,
}

/// Why no frame came.
enum Violation {
    Io(io::Error),
    Protocol(String),
}

/// The next whole message, type byte and length included, or `None` at the end of the stream.
/// Before startup (`untyped`) a packet is a length and a body; after, a type byte, a length
/// and a body. A length that cannot be is a protocol violation, found before anything is
/// decoded.
async fn next_frame(
    tcp: &mut TcpStream,
    read: &mut BytesMut,
    untyped: bool,
) -> Result<Option<BytesMut>, Violation> {
    loop {
        let wanted = match frame_len(read, untyped).map_err(Violation::Protocol)? {
            Some(len) if read.len() >= len => return Ok(Some(read.split_to(len))),
            Some(len) => len - read.len(),
            None => 8,
        };
        read.reserve(wanted.min(READ_CHUNK));
        if tcp.read_buf(read).await.map_err(Violation::Io)? == 0 {
            // The peer left, perhaps in the middle of a message, which then never happened.
            return Ok(None);
        }
    }
}

/// The whole length of the frame `read` starts with, once its header is in.
fn frame_len(read: &[u8], untyped: bool) -> Result<Option<usize>, String> {
    let (header, min, max) = if untyped {
        (0, 8, MAX_STARTUP_LEN)
    } else {
        (1, 4, MAX_MESSAGE_LEN)
    };
    let Some(field) = read.get(header..header + 4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    match usize::try_from(len) {
        Ok(len) if (min..=max).contains(&len) => Ok(Some(header + len)),
        _ if untyped => Err(format!("invalid length of startup packet: {len}")),
        _ => Err(format!(
            "invalid message length {len} for message type \"{}\"",
            read[0].escape_ascii()
        )),
    }
}

/// Tells the client why it is disconnected (FATAL 08P01, protocol violation), then closes.
async fn refuse<S>(
    socket: &mut Framed<TcpStream, PgWireMessageServerCodec<S>>,
    why: String,
) -> io::Result<()> {
    log::debug!(
        "closing the connection from {}: {why}",
        socket.socket_addr()
    );
    let error = ErrorInfo::new("FATAL".to_owned(), "08P01".to_owned(), why);
    socket
        .send(PgWireBackendMessage::ErrorResponse(error.into()))
        .await?;
    socket.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_measured_by_their_length_field() {
        // A Sync: 'S' and length 4, nothing else.
        assert_eq!(frame_len(b"S\0\0\0\x04", false), Ok(Some(5)));
        // Too short to tell yet.
        assert_eq!(frame_len(b"Q\0\0", false), Ok(None));
        assert_eq!(frame_len(b"\0\0\0", true), Ok(None));
        // A startup packet of 8 bytes is as short as one can be (length and code).
        assert_eq!(frame_len(b"\0\0\0\x08\x04\xd2\x16\x2f", true), Ok(Some(8)));
    }

    #[test]
    fn impossible_lengths_are_violations() {
        // Below the length field itself: pgwire 0.41 underflows on these.
        for len in [0_i32, 3, -1, i32::MIN] {
            let mut frame = vec![b'd'];
            frame.extend(len.to_be_bytes());
            let error = frame_len(&frame, false).unwrap_err();
            assert!(error.contains(&format!("length {len}")), "{error}");
            assert!(error.contains("\"d\""), "{error}");
        }
        // Above PostgreSQL's limits.
        let mut frame = vec![b'Q'];
        frame.extend(0x4000_0000_i32.to_be_bytes());
        assert!(frame_len(&frame, false).is_err());
        for len in [7_i32, 10_001, -8] {
            let error = frame_len(&len.to_be_bytes(), true).unwrap_err();
            assert!(error.contains("startup packet"), "{error}");
        }
    }
}
