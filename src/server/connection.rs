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
use pgwire::error::{ErrorInfo, PgWireError};
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
/// The largest other message (pgwire's limit for them).
const MAX_SMALL_MESSAGE_LEN: usize = 10_000;
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
    // The first password message of a login is a SASL initial response.
    let mut sasl_started = false;
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
        if !untyped {
            let authenticating = matches!(
                socket.state(),
                PgWireConnectionState::AuthenticationInProgress
            );
            let sasl_initial = authenticating && !sasl_started;
            sasl_started |= authenticating && frame[0] == b'p';
            if let Err(why) = check_body(frame[0], &frame[5..], sasl_initial) {
                return refuse(&mut socket, why).await;
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
        let cancels = matches!(message, PgWireFrontendMessage::CancelRequest(_));
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
            let error = ErrorInfo::from(e);
            let fatal = error.is_fatal();
            process_error(
                &mut socket,
                PgWireError::UserError(Box::new(error)),
                extended_query,
            )
            .await?;
            // A failed login (or any FATAL error) ends the connection here: pgwire only shuts
            // the socket's writing half, and has set the state to ready for queries.
            if fatal {
                return Ok(());
            }
        }
        // A cancel request comes on a connection of its own, which it ends.
        if cancels {
            return Ok(());
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
    let (header, min, max) = match read.first() {
        _ if untyped => (0, 8, MAX_STARTUP_LEN),
        // Queries, statements, parameters and COPY data may be long; nothing else (pgwire's
        // limits: a password or a Sync of a gigabyte is no message).
        Some(b'Q' | b'P' | b'B' | b'd') => (1, 4, MAX_MESSAGE_LEN),
        _ => (1, 4, MAX_SMALL_MESSAGE_LEN),
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

/// Checks that the body of a message of type `kind` holds what pgwire's decoder of that type
/// reads (whose reads past the end panic): NUL-terminated strings, counts and lengths within
/// the body. `sasl_initial`: a password message is a SASL initial response (mechanism, data
/// length, data).
fn check_body(kind: u8, body: &[u8], sasl_initial: bool) -> Result<(), String> {
    let mut body = Body(body);
    let complete = match kind {
        b'Q' => body.cstring(),
        b'P' => body.cstring().and_then(|()| body.cstring()).and_then(|()| {
            let types = body.u16()?;
            body.skip(usize::from(types) * 4)
        }),
        b'B' => body.cstring().and_then(|()| body.cstring()).and_then(|()| {
            let formats = body.u16()?;
            body.skip(usize::from(formats) * 2)?;
            for _ in 0..body.u16()? {
                if let Ok(len) = usize::try_from(body.i32()?) {
                    body.skip(len)?;
                }
            }
            let formats = body.u16()?;
            body.skip(usize::from(formats) * 2)
        }),
        b'C' | b'D' => body.skip(1).and_then(|()| body.cstring()),
        b'E' => body.cstring().and_then(|()| body.i32().map(drop)),
        b'p' if sasl_initial => body.cstring().and_then(|()| match body.i32()? {
            -1 => Some(()),
            len => body.skip(usize::try_from(len).ok()?),
        }),
        _ => Some(()),
    };
    complete.ok_or_else(|| {
        format!(
            "invalid message format: message type \"{}\" is cut short or malformed",
            kind.escape_ascii()
        )
    })
}

/// A message body being checked, read from the front.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }

    fn cstring(&mut self) -> Option<()> {
        let end = self.0.iter().position(|&b| b == 0)?;
        self.skip(end + 1)
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.0.get(..2)?;
        let value = u16::from_be_bytes([bytes[0], bytes[1]]);
        self.skip(2).map(|()| value)
    }

    fn i32(&mut self) -> Option<i32> {
        let bytes = self.0.get(..4)?;
        let value = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        self.skip(4).map(|()| value)
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

    /// Bodies that pgwire's decoders would read past: refused; whole ones pass.
    #[test]
    fn bodies_cut_short_are_refused() {
        for (kind, body) in [
            (b'P', &b""[..]),
            (b'P', b"s\0SELECT 1\0"),
            (b'P', b"s\0SELECT $1\0\0\x02\0\0\0\x14"),
            (b'B', b"\0\0\0\0\0\x01\0\0\0\x09abc"),
            (b'E', b"\0\0\0"),
            (b'D', b""),
            (b'C', b"S"),
            (b'Q', b"SELECT 1"),
        ] {
            let error = check_body(kind, body, false).unwrap_err();
            assert!(error.contains("invalid message format"), "{error}");
        }
        for (kind, body) in [
            (b'P', &b"s\0SELECT $1\0\0\x01\0\0\0\x14"[..]),
            (b'B', b"\0\0\0\0\0\x02\0\0\0\x03abc\xff\xff\xff\xff\0\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'D', b"S\0"),
            (b'S', b""),
            (b'd', b"any bytes"),
            (b'p', b"SCRAM-SHA-256"),
        ] {
            assert_eq!(check_body(kind, body, false), Ok(()), "{kind}");
        }
        // A SASL initial response: mechanism, then the data's length and the data.
        assert!(check_body(b'p', b"SCRAM-SHA-256\0", true).is_err());
        assert!(check_body(b'p', b"SCRAM-SHA-256\0\0\0\0\x05abc", true).is_err());
        assert!(check_body(b'p', b"SCRAM-SHA-256\0\xff\xff\xff\xfe", true).is_err());
        assert_eq!(
            check_body(b'p', b"SCRAM-SHA-256\0\0\0\0\x03abc", true),
            Ok(())
        );
        assert_eq!(
            check_body(b'p', b"SCRAM-SHA-256\0\xff\xff\xff\xff", true),
            Ok(())
        );
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
        // Above PostgreSQL's limits, and a password or a Sync longer than pgwire takes.
        let mut frame = vec![b'Q'];
        frame.extend(0x4000_0000_i32.to_be_bytes());
        assert!(frame_len(&frame, false).is_err());
        for kind in [b'p', b'S', b'E'] {
            let mut frame = vec![kind];
            frame.extend(10_001_i32.to_be_bytes());
            assert!(frame_len(&frame, false).is_err());
        }
        let mut frame = vec![b'd'];
        frame.extend(10_001_i32.to_be_bytes());
        assert_eq!(frame_len(&frame, false), Ok(Some(10_002)));
        for len in [7_i32, 10_001, -8] {
            let error = frame_len(&len.to_be_bytes(), true).unwrap_err();
            assert!(error.contains("startup packet"), "{error}");
        }
    }
}
