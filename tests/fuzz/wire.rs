//! Postgres wire frames against `sabot serve`: startup packets (and SSL, GSS and cancel
//! requests), simple and extended protocol messages in any order (Parse, Bind, Describe,
//! Execute, Sync, Close, Flush, copy and function-call messages), random bytes, lengths at
//! and past the limits, connections dropped mid-result.
//!
//! Oracle: no panic; every ErrorResponse carries a SQLSTATE; after each conversation a new
//! session still answers `SELECT 1`; the job started before the first input is still
//! running at the end.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sabot::SabotConfig;
use sabot::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::harness::{self, Outcome};

#[derive(Arbitrary, Debug)]
struct Conversation {
    startup: Startup,
    messages: Vec<Message>,
    /// Bytes per write (0: all at once).
    chunk: u8,
    /// Keep the connection open after the last message (until the read times out).
    keep_open: bool,
}

#[derive(Arbitrary, Debug)]
enum Startup {
    Normal(Vec<(Text, Text)>),
    Ssl,
    Gss,
    Cancel(i32, i32),
    Version(u32),
    Length(i32, Vec<u8>),
    Nothing,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Message {
    Query(Sql),
    Parse(Text, Sql, Vec<u32>),
    Bind(Text, Text, Vec<i16>, Vec<Option<Vec<u8>>>, Vec<i16>),
    Describe(bool, Text),
    Execute(Text, i32),
    Sync,
    Flush,
    Close(bool, Text),
    Terminate,
    CopyData(Vec<u8>),
    CopyDone,
    CopyFail(String),
    Password(Vec<u8>),
    FunctionCall(Vec<u8>),
    Raw(u8, Vec<u8>),
    Length(u8, i32, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Sql {
    Known(u8),
    Any(String),
    Deep(u16),
}

const STATEMENTS: &[&str] = &[
    "SELECT 1",
    "SELECT $1::BIGINT + 1",
    "SELECT * FROM w WHERE a = $1",
    "SELECT * FROM bid LIMIT 3",
    "SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end",
    "SELECT * FROM endless",
    "SHOW JOBS",
    "SHOW TimeZone",
    "BEGIN",
    "COMMIT",
    "DEALLOCATE ALL",
    "DEALLOCATE nope",
    "DISCARD ALL",
    "SET application_name = 'é'",
    "SET sessioné = 1",
    "SET 'parallelism' = '3'",
    "CREATE TABLE IF NOT EXISTS w (a INT)",
    "INSERT INTO w VALUES (1), (2)",
    "CANCEL JOB 999999",
    "EXPLAIN SELECT 1",
    "SELECT to_char(TIMESTAMP '2024-01-01 10:00', 'YYYY-MM-DD HH24:MI')",
    "SELECT '2024-01-01 00:00:10+05'::timestamptz",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS mvw (x) AS SELECT 1",
    "SELECT * FROM mvw",
    "SELECT 1/0",
    "",
    ";",
    "SELECT 1; SELECT 2",
    "COPY w TO STDOUT",
    "SELECT pg_catalog.version()",
];

const PARAMETERS: &[&str] = &[
    "user",
    "sabot",
    "database",
    "application_name",
    "client_encoding",
    "UTF8",
    "options",
    "-c statement_timeout=0",
    "replication",
    "é",
    "",
];

fn text(t: &Text, known: &[&str]) -> String {
    match t {
        Text::Known(i) => known[*i as usize % known.len()].to_string(),
        Text::Any(s) => s.replace('\0', ""),
    }
}

fn sql(s: &Sql) -> String {
    match s {
        Sql::Known(i) => STATEMENTS[*i as usize % STATEMENTS.len()].to_string(),
        Sql::Any(s) => s.replace('\0', ""),
        Sql::Deep(n) => format!("SELECT {}", vec!["1"; *n as usize % 20_000 + 1].join("+")),
    }
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn encode(c: &Conversation) -> Vec<u8> {
    let mut out = Vec::new();
    match &c.startup {
        Startup::Normal(params) => {
            let mut body = 196_608u32.to_be_bytes().to_vec();
            let mut has_user = false;
            for (k, v) in params.iter().take(6) {
                let k = text(k, PARAMETERS);
                has_user |= k == "user";
                cstr(&mut body, &k);
                cstr(&mut body, &text(v, PARAMETERS));
            }
            if !has_user {
                cstr(&mut body, "user");
                cstr(&mut body, "sabot");
            }
            body.push(0);
            out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            out.extend_from_slice(&body);
        }
        Startup::Ssl => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&80_877_103i32.to_be_bytes());
        }
        Startup::Gss => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&80_877_104i32.to_be_bytes());
        }
        Startup::Cancel(pid, key) => {
            out.extend_from_slice(&16i32.to_be_bytes());
            out.extend_from_slice(&80_877_102i32.to_be_bytes());
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&key.to_be_bytes());
        }
        Startup::Version(v) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        Startup::Length(len, body) => {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body[..body.len().min(256)]);
        }
        Startup::Nothing => {}
    }
    for m in c.messages.iter().take(12) {
        let mut body = Vec::new();
        match m {
            Message::Query(s) => {
                cstr(&mut body, &sql(s));
                frame(&mut out, b'Q', &body);
            }
            Message::Parse(name, s, types) => {
                cstr(&mut body, &text(name, &["", "s1", "s2"]));
                cstr(&mut body, &sql(s));
                let types = &types[..types.len().min(8)];
                body.extend_from_slice(&(types.len() as i16).to_be_bytes());
                for t in types {
                    // Mostly real type oids (bool, int8, int2, int4, text, float8, timestamp).
                    let oid = [16u32, 20, 21, 23, 25, 701, 1114, 1184, 0, *t][*t as usize % 10];
                    body.extend_from_slice(&oid.to_be_bytes());
                }
                frame(&mut out, b'P', &body);
            }
            Message::Bind(portal, statement, formats, params, results) => {
                cstr(&mut body, &text(portal, &["", "p1"]));
                cstr(&mut body, &text(statement, &["", "s1", "s2"]));
                let formats = &formats[..formats.len().min(4)];
                body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
                for f in formats {
                    body.extend_from_slice(&(f % 3).to_be_bytes());
                }
                let params = &params[..params.len().min(4)];
                body.extend_from_slice(&(params.len() as i16).to_be_bytes());
                for p in params {
                    match p {
                        Some(bytes) => {
                            body.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                            body.extend_from_slice(bytes);
                        }
                        None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                    }
                }
                let results = &results[..results.len().min(4)];
                body.extend_from_slice(&(results.len() as i16).to_be_bytes());
                for f in results {
                    body.extend_from_slice(&(f % 3).to_be_bytes());
                }
                frame(&mut out, b'B', &body);
            }
            Message::Describe(statement, name) => {
                body.push(if *statement { b'S' } else { b'P' });
                cstr(&mut body, &text(name, &["", "s1", "p1"]));
                frame(&mut out, b'D', &body);
            }
            Message::Execute(portal, max_rows) => {
                cstr(&mut body, &text(portal, &["", "p1"]));
                body.extend_from_slice(&max_rows.to_be_bytes());
                frame(&mut out, b'E', &body);
            }
            Message::Sync => frame(&mut out, b'S', &[]),
            Message::Flush => frame(&mut out, b'H', &[]),
            Message::Close(statement, name) => {
                body.push(if *statement { b'S' } else { b'P' });
                cstr(&mut body, &text(name, &["", "s1", "p1"]));
                frame(&mut out, b'C', &body);
            }
            Message::Terminate => frame(&mut out, b'X', &[]),
            Message::CopyData(bytes) => frame(&mut out, b'd', bytes),
            Message::CopyDone => frame(&mut out, b'c', &[]),
            Message::CopyFail(msg) => {
                cstr(&mut body, &msg.replace('\0', ""));
                frame(&mut out, b'f', &body);
            }
            Message::Password(bytes) => frame(&mut out, b'p', bytes),
            Message::FunctionCall(bytes) => frame(&mut out, b'F', bytes),
            Message::Raw(tag, bytes) => frame(&mut out, *tag, bytes),
            Message::Length(tag, len, bytes) => {
                out.push(*tag);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes[..bytes.len().min(64)]);
            }
        }
    }
    out
}

/// Checks the backend messages in `bytes`: every ErrorResponse has a five-character
/// SQLSTATE. Returns the codes seen.
fn check_errors(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut codes = Vec::new();
    let mut rest = bytes;
    // An answer to an SSL or GSS request is one byte.
    if matches!(rest.first(), Some(b'N') | Some(b'S')) && rest.len() == 1 {
        return Ok(codes);
    }
    if let Some(b'N') = rest.first()
        && rest.get(1).is_some_and(|b| b.is_ascii_uppercase())
    {
        rest = &rest[1..];
    }
    while rest.len() >= 5 {
        let tag = rest[0];
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        if len < 4 || (len as usize + 1) > rest.len() {
            break;
        }
        let body = &rest[5..1 + len as usize];
        if tag == b'E' {
            let mut code = None;
            for field in body.split(|b| *b == 0) {
                if let Some((&b'C', value)) = field.split_first() {
                    code = Some(String::from_utf8_lossy(value).to_string());
                }
            }
            match code {
                Some(c) if c.len() == 5 => codes.push(c),
                other => {
                    return Err(format!(
                        "an ErrorResponse without a SQLSTATE ({other:?}): {}",
                        String::from_utf8_lossy(body)
                    ));
                }
            }
        }
        rest = &rest[1 + len as usize..];
    }
    Ok(codes)
}

async fn converse(port: u16, c: &Conversation) -> Result<Vec<u8>, String> {
    let bytes = encode(c);
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("the server refused a connection: {e}"))?;
    let chunk = if c.chunk == 0 {
        bytes.len().max(1)
    } else {
        c.chunk as usize
    };
    for piece in bytes.chunks(chunk) {
        if socket.write_all(piece).await.is_err() {
            break;
        }
    }
    // Most conversations end with the client's end of input (a client gone mid-statement);
    // some keep the connection open, as a client waiting for an answer does.
    if !c.keep_open {
        let _ = socket.shutdown().await;
    }
    let mut response = Vec::new();
    let mut buf = vec![0u8; 65_536];
    // Read what the server says until it closes, goes quiet, or has said plenty (a streaming
    // query); then hang up, which a running query must survive.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() > 1 << 20 {
                    break;
                }
            }
        }
    }
    Ok(response)
}

/// A new session, within 10 s.
async fn connect(port: u16) -> Result<tokio_postgres::Client, String> {
    let address = format!("host=127.0.0.1 port={port} user=sabot dbname=sabot");
    let connect = tokio_postgres::connect(&address, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "a new session could not connect within 10 s".to_string())?
        .map_err(|e| format!("a new session could not connect: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn select_one(port: u16) -> Result<(), String> {
    let client = connect(port).await?;
    let rows = tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1"))
        .await
        .map_err(|_| "SELECT 1 took more than 10 s".to_string())?
        .map_err(|e| format!("SELECT 1 failed: {e}"))?;
    let row = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    });
    match row {
        Some("1") => Ok(()),
        other => Err(format!("SELECT 1 answered {other:?}")),
    }
}

/// The wire target (see the module docs).
#[test]
fn fuzz_target_wire() {
    let rt = harness::runtime();
    let port = rt.block_on(async {
        let server = Server::new(SabotConfig {
            parallelism: 2,
            checkpoint_interval: None,
            ..SabotConfig::default()
        })
        .await
        .expect("server");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(server.run(listener, std::future::pending::<()>()));
        let client = connect(port).await.expect("connect");
        for setup in [
            "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), \
             WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH ('connector' = \
             'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '200', 'throttle' = 'false', \
             'base-time' = '2024-01-01 00:00:00')",
            "CREATE TABLE endless (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH \
             ('connector' = 'datagen', 'rows-per-second' = '100')",
            "CREATE TABLE drain (k BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole')",
            "INSERT INTO drain SELECT * FROM endless",
        ] {
            client.simple_query(setup).await.expect(setup);
        }
        port
    });
    let mut since_check = 0;
    harness::run("wire", 1_024, |data| {
        let mut u = Unstructured::new(data);
        let Ok(conversation) = Conversation::arbitrary(&mut u) else {
            return Ok("no input".into());
        };
        rt.block_on(async {
            let started = std::time::Instant::now();
            let response = converse(port, &conversation).await?;
            if std::env::var_os("SABOT_FUZZ_VERBOSE").is_some() {
                eprintln!(
                    "wire: {:?} {} bytes back: {:?}",
                    started.elapsed(),
                    response.len(),
                    conversation
                        .messages
                        .iter()
                        .take(3)
                        .map(|m| format!("{m:?}").chars().take(60).collect::<String>())
                        .collect::<Vec<_>>()
                );
            }
            let codes = check_errors(&response)?;
            since_check += 1;
            if since_check >= 8 {
                since_check = 0;
                select_one(port).await?;
            }
            Ok::<Outcome, String>(match codes.first() {
                Some(code) => format!("error {code}"),
                None if response.is_empty() => "closed".into(),
                None => "answered".into(),
            })
        })
    });
    rt.block_on(async {
        select_one(port).await.expect("the server still serves");
        let client = connect(port).await.expect("connect");
        let jobs = client.simple_query("SHOW JOBS").await.expect("SHOW JOBS");
        let running = jobs.iter().any(|m| match m {
            SimpleQueryMessage::Row(r) => {
                r.get(1)
                    .is_some_and(|sql| sql.contains("INSERT INTO drain"))
                    && r.get(2) == Some("running")
            }
            _ => false,
        });
        assert!(running, "the job started before fuzzing stopped: {jobs:?}");
    });
}
