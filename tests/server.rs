//! `sabot serve` through real Postgres clients: tokio-postgres (simple and extended protocol,
//! types, errors, cancel, concurrent sessions, jobs) against a server on an ephemeral loopback
//! port, and raw sockets sending broken frames.

use std::sync::Arc;

use futures::StreamExt;
use std::time::Duration;

use sabot::SabotConfig;
use sabot::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A server on a free loopback port; stops when the returned sender is dropped.
async fn start() -> (u16, tokio::sync::oneshot::Sender<()>) {
    let (port, stop, _running) = serve(SabotConfig {
        parallelism: 2,
        checkpoint_interval: None,
        ..SabotConfig::default()
    })
    .await;
    (port, stop)
}

/// A server with `config` on a free loopback port: its port, the sender that stops it (also
/// when dropped), and its task.
async fn serve(
    config: SabotConfig,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<datafusion::common::Result<()>>,
) {
    let server = Server::new(config).await.expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    (port, stop, running)
}

/// A server keeping its catalog and checkpoints in `state`, checkpointing every `interval`.
async fn serve_with_state(
    state: String,
    interval: Duration,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<datafusion::common::Result<()>>,
) {
    serve(SabotConfig {
        parallelism: 2,
        checkpoint_interval: Some(interval),
        state_dir: Some(state),
        ..SabotConfig::default()
    })
    .await
}

async fn connect(port: u16) -> Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=sabot dbname=sabot"),
        NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

/// The rows of a simple query as text cells.
async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}: {:?}", e.as_db_error().map(|d| d.message())))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_with_every_type() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT, name VARCHAR, price DOUBLE, ts TIMESTAMP(3));
             INSERT INTO t VALUES (1, 'a', 1.5, TIMESTAMP '2024-01-01 00:00:01'),
                                  (2, 'b', 2.5, TIMESTAMP '2024-01-01 00:00:02')",
        )
        .await
        .expect("ddl and insert");
    // Simple protocol, text format.
    let rows = simple_rows(&client, "SELECT id, name, price FROM t ORDER BY id").await;
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("a".into()), Some("1.5".into())],
            vec![Some("2".into()), Some("b".into()), Some("2.5".into())],
        ]
    );
    // Extended protocol with a parameter, binary results.
    let rows = client
        .query("SELECT name, price FROM t WHERE id = $1", &[&2i64])
        .await
        .expect("parameter query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "b");
    assert_eq!(rows[0].get::<_, f64>(1), 2.5);
    // The types of DESIGN.md in binary: bool, int2/4/8, float4/8, numeric, text, bytea, date,
    // time, timestamp, interval-free set here (intervals have no tokio-postgres type).
    let row = client
        .query_one(
            "SELECT true, CAST(2 AS SMALLINT), CAST(3 AS INT), CAST(4 AS BIGINT), \
             CAST(1.5 AS REAL), CAST(2.25 AS DOUBLE), 'text', CAST('ab' AS BYTEA), \
             DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05'",
            &[],
        )
        .await
        .expect("types");
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), 2);
    assert_eq!(row.get::<_, i32>(2), 3);
    assert_eq!(row.get::<_, i64>(3), 4);
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(row.get::<_, f64>(5), 2.25);
    assert_eq!(row.get::<_, String>(6), "text");
    assert_eq!(row.get::<_, Vec<u8>>(7), b"ab".to_vec());
    // The same values in text format through the simple protocol.
    let rows = simple_rows(
        &client,
        "SELECT true, CAST(2 AS SMALLINT), DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05'",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some("t".into()),
            Some("2".into()),
            Some("2024-01-02".into()),
            Some("2024-01-02 03:04:05".into()),
        ]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstates_and_the_session_survives() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT)")
        .await
        .expect("create");
    // A filesystem table whose path is not there (found by the SQL fuzz target as XX000).
    let gone = tempfile::tempdir().expect("tempdir");
    client
        .batch_execute(&format!(
            "CREATE TABLE nowhere (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', \
             'format' = 'json')",
            gone.path().join("missing").display()
        ))
        .await
        .expect("create nowhere");
    let cases = [
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM missing", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM t", SqlState::UNDEFINED_COLUMN),
        (
            "SELECT CAST('x' AS INT)",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        ("CANCEL JOB 42", SqlState::UNDEFINED_OBJECT),
        ("SELECT * FROM nowhere", SqlState::UNDEFINED_FILE),
    ];
    for (sql, state) in cases {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), state.code(), "{sql}: {e}");
        let e = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(code(&e), state.code(), "{sql} (extended): {e}");
        // Still usable.
        assert_eq!(
            simple_rows(&client, "SELECT 1").await,
            vec![vec![Some("1".into())]]
        );
    }
}

const BIDS: &str = "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3), \
    WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
    WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '1000', \
    'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00')";

/// A SELECT over an unbounded stream sends windows as they close and ends at LIMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_select_ends_at_limit() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    let rows = simple_rows(
        &client,
        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), \
         INTERVAL '1' SECOND)) GROUP BY window_start, window_end LIMIT 3",
    )
    .await;
    // 1000 events per second of event time, 920 of them bids, in windows from the base time.
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row[1].as_deref(), Some("920"));
    }
}

/// A CancelRequest stops a streaming SELECT that would never end; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_streaming_select() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await.expect("cancel request");
    });
    let e = client
        .simple_query("SELECT auction FROM bid")
        .await
        .expect_err("canceled");
    assert_eq!(code(&e), SqlState::QUERY_CANCELED.code(), "{e}");
    canceller.await.expect("canceller");
    assert_eq!(
        simple_rows(&client, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
}

/// Through the extended protocol (a driver's `query` without LIMIT), a streaming SELECT's rows
/// arrive while it runs, and a CancelRequest stops it; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_streams_and_cancels_an_unbounded_query() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    let rows = client
        .query_raw(
            "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), \
             INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
            std::iter::empty::<i32>(),
        )
        .await
        .expect("query");
    futures::pin_mut!(rows);
    // Windows arrive as they close. Before rows were streamed, the server collected all rows
    // of an Execute first, and none of this unbounded query ever came.
    for _ in 0..3 {
        let row = tokio::time::timeout(Duration::from_secs(60), rows.next())
            .await
            .expect("a window within a minute")
            .expect("a row")
            .expect("row ok");
        assert_eq!(row.get::<_, i64>(1), 920);
    }
    client
        .cancel_token()
        .cancel_query(NoTls)
        .await
        .expect("cancel request");
    let e = loop {
        match tokio::time::timeout(Duration::from_secs(60), rows.next())
            .await
            .expect("canceled within a minute")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the query ended without being canceled"),
        }
    };
    assert_eq!(code(&e), SqlState::QUERY_CANCELED.code(), "{e}");
    let row = client
        .query_one("SELECT $1::BIGINT + 1", &[&41i64])
        .await
        .expect("after cancel");
    assert_eq!(row.get::<_, i64>(0), 42);
}

/// With Flink's `table.dml-sync`, INSERT ... SELECT runs to completion and reports its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dml_sync_runs_insert_select_to_completion() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE src (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
             WITH ('connector' = 'memory'); \
             INSERT INTO src VALUES (1, TIMESTAMP '2024-01-01 00:00:01'), \
             (1, TIMESTAMP '2024-01-01 00:00:02'), (2, TIMESTAMP '2024-01-01 00:00:12'); \
             CREATE TABLE out (k BIGINT, n BIGINT) WITH ('connector' = 'memory'); \
             SET 'table.dml-sync' = 'true'",
        )
        .await
        .expect("setup");
    let n = client
        .execute(
            "INSERT INTO out SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), \
             INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end",
            &[],
        )
        .await
        .expect("insert");
    assert_eq!(n, 2);
    let mut rows = simple_rows(&client, "SELECT k, n FROM out").await;
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("2".into())],
            vec![Some("2".into()), Some("1".into())]
        ]
    );
    assert_eq!(
        simple_rows(&client, "SHOW JOBS").await.len(),
        0,
        "no background job"
    );
}

/// INSERT INTO ... SELECT over a stream starts a job and returns; SHOW JOBS sees it from
/// another session, and CANCEL JOB stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_starts_a_job_that_show_jobs_and_cancel_job_see() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    client
        .batch_execute(
            "CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole')",
        )
        .await
        .expect("sink");
    let messages = client
        .simple_query(
            "INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
             DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end",
        )
        .await
        .expect("insert returns at once");
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(0)))
    );
    let other = connect(port).await;
    let mut events = 0u64;
    for _ in 0..600 {
        let jobs = simple_rows(&other, "SHOW JOBS").await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0][0].as_deref(), Some("1"));
        assert_eq!(jobs[0][2].as_deref(), Some("running"));
        events = jobs[0][3].as_deref().unwrap_or("0").parse().unwrap_or(0);
        if events > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(events > 0, "the job reads events");
    other.simple_query("CANCEL JOB 1").await.expect("cancel");
    let jobs = simple_rows(&client, "SHOW JOBS").await;
    assert_eq!(jobs[0][2].as_deref(), Some("canceled"));
}

/// Tables are shared between sessions; settings are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_tables_not_settings() {
    let (port, _stop) = start().await;
    let a = connect(port).await;
    let b = connect(port).await;
    a.batch_execute("CREATE TABLE shared (x BIGINT); SET 'parallelism' = '1'")
        .await
        .expect("a");
    assert_eq!(
        simple_rows(&a, "SHOW parallelism").await,
        vec![vec![Some("1".into())]]
    );
    assert_eq!(
        simple_rows(&b, "SHOW parallelism").await,
        vec![vec![Some("2".into())]]
    );
    assert_eq!(
        simple_rows(&b, "SELECT COUNT(*) FROM shared").await,
        vec![vec![Some("0".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions() {
    let (port, _stop) = start().await;
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        tasks.push(tokio::spawn(async move {
            let client = connect(port).await;
            let row = client
                .query_one("SELECT CAST($1 AS BIGINT) * 2", &[&i])
                .await
                .expect("query");
            row.get::<_, i64>(0)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    assert_eq!(got, (0..50).map(|i| i * 2).collect::<Vec<i64>>());
}

/// Broken frames close that connection (or get an error); the server keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_socket_abuse_does_not_stop_the_server() {
    let (port, _stop) = start().await;
    let abuse: Vec<Vec<u8>> = vec![
        // Truncated startup packet: a length with nothing after it.
        vec![0, 0, 0, 40],
        // Absurd length.
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        // Garbage.
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    for bytes in abuse {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let _ = socket.write_all(&bytes).await;
        let _ = socket.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut sink)).await;
    }
    // A proper session after a startup, then an unknown message type, then a disconnect in the
    // middle of a result.
    let client = connect(port).await;
    assert_eq!(
        simple_rows(&client, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket.write_all(&startup_packet()).await.expect("startup");
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    socket
        .write_all(&[b'!', 0, 0, 0, 4])
        .await
        .expect("unknown message");
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    drop(socket);
    let still = connect(port).await;
    assert_eq!(
        simple_rows(&still, "SELECT 2").await,
        vec![vec![Some("2".into())]]
    );
    let _ = Arc::new(());
}

/// A message whose length field is shorter than the field itself (pgwire 0.41 underflows on
/// `len - 4` and panics) or longer than PostgreSQL allows is refused with a FATAL protocol
/// violation naming the length, that connection closes, and the server serves the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_message_lengths_are_refused_with_08p01() {
    let (port, _stop) = start().await;
    let messages: [&[u8]; 4] = [
        &[b'd', 0, 0, 0, 0],             // CopyData of length 0
        &[b'Q', 0, 0, 0, 3],             // Query of length 3
        &[b'S', 0xff, 0xff, 0xff, 0xff], // Sync of length -1
        &[b'Q', 0x40, 0, 0, 0],          // 1 GiB, above PostgreSQL's limit
    ];
    for message in messages {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        socket.write_all(&startup_packet()).await.expect("startup");
        let mut greeting = Vec::new();
        while !greeting.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                .await
                .expect("the greeting in time")
                .expect("read");
            assert!(n > 0, "the server closed before ReadyForQuery");
            greeting.extend_from_slice(&buf[..n]);
        }
        socket.write_all(message).await.expect("message");
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
            .await
            .expect("the server closes the connection")
            .expect("read");
        let text = String::from_utf8_lossy(&reply);
        assert!(reply.first() == Some(&b'E'), "an ErrorResponse: {text:?}");
        assert!(text.contains("SFATAL\0"), "{text:?}");
        assert!(text.contains("C08P01\0"), "{text:?}");
        assert!(text.contains("invalid message length"), "{text:?}");
    }
    let still = connect(port).await;
    assert_eq!(
        simple_rows(&still, "SELECT 3").await,
        vec![vec![Some("3".into())]]
    );
}

fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
    for s in ["user", "sabot", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// psql, as a user runs it: `\dt`, `\d table`, a query.
async fn psql(port: u16, command: &str) -> (bool, String, String) {
    let command = command.to_string();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "sabot",
                "-d",
                "sabot",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", &command])
            .output()
            .expect("psql is installed (scripts/setup installs postgresql-client)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .expect("psql task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_tables_and_streams_a_query() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    client
        .batch_execute("CREATE TABLE dim (id BIGINT, name VARCHAR)")
        .await
        .expect("create dim");
    let (ok, out, err) = psql(port, "\\dt").await;
    assert!(ok, "{err}");
    assert!(out.contains("|bid|"), "{out}");
    assert!(out.contains("|dim|"), "{out}");
    let (ok, out, err) = psql(port, "\\d dim").await;
    assert!(ok, "{err}");
    assert!(out.contains("id|bigint"), "{out}");
    assert!(out.contains("name|"), "{out}");
    let (ok, out, err) = psql(
        port,
        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), \
         INTERVAL '1' SECOND)) GROUP BY window_start, window_end LIMIT 2",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["2024-01-01 00:00:00|920", "2024-01-01 00:00:01|920"]
    );
}

/// The binary: `sabot serve --listen 127.0.0.1:0` says where it listens, serves, and stops on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabot_serve_binary_stops_on_sigterm() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let port = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            line.split("listening on 127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
        });
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        port
    })
    .await
    .expect("reader")
    .expect("the listening address on standard error");
    let client = connect(port).await;
    assert_eq!(
        simple_rows(&client, "SELECT 3").await,
        vec![vec![Some("3".into())]]
    );
    // SAFETY: sending SIGTERM to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("waiter")
        .expect("status");
    assert!(status.success(), "{status}");
}

/// A materialized view: its job fills a table that ordinary batch SQL (and psql) query while
/// the job runs; DROP MATERIALIZED VIEW stops the job and removes the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_view_is_queryable_while_its_job_runs() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_second AS \
             SELECT window_start, COUNT(*) AS bids, MAX(price) AS top \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end",
        )
        .await
        .expect("create materialized view");
    let mut windows = 0;
    for _ in 0..600 {
        let rows = simple_rows(
            &client,
            "SELECT COUNT(*), MIN(bids), MAX(bids) FROM per_second",
        )
        .await;
        windows = rows[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
        if windows >= 3 {
            // Every closed one-second window holds 920 bids.
            assert_eq!(rows[0][1].as_deref(), Some("920"));
            assert_eq!(rows[0][2].as_deref(), Some("920"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(windows >= 3, "windows in the view: {windows}");
    let (ok, out, err) = psql(
        port,
        "SELECT bids FROM per_second ORDER BY window_start LIMIT 1",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "920");
    let jobs = simple_rows(&client, "SHOW JOBS").await;
    assert_eq!(jobs[0][2].as_deref(), Some("running"));
    client
        .batch_execute("DROP MATERIALIZED VIEW per_second")
        .await
        .expect("drop");
    let jobs = simple_rows(&client, "SHOW JOBS").await;
    assert_eq!(jobs[0][2].as_deref(), Some("canceled"));
    let e = client
        .simple_query("SELECT * FROM per_second")
        .await
        .expect_err("gone");
    assert_eq!(code(&e), SqlState::UNDEFINED_TABLE.code(), "{e}");
}

/// A memory table with a PRIMARY KEY keeps one row per key, and views over it follow: an INSERT
/// of a key the table holds replaces its row, and the views see the old row taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_keyed_table_see_replaced_rows_taken_back() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE kv (k VARCHAR, v BIGINT, PRIMARY KEY (k) NOT ENFORCED) \
               WITH ('connector' = 'memory'); \
             INSERT INTO kv VALUES ('a', 1), ('b', 2), ('a', 3); \
             CREATE MATERIALIZED VIEW sums AS SELECT COUNT(*) AS n, SUM(v) AS s FROM kv; \
             CREATE MATERIALIZED VIEW per_v AS SELECT v % 2 AS odd, COUNT(*) AS n FROM kv \
               GROUP BY v % 2",
        )
        .await
        .expect("create");
    let row = |cells: &[&str]| {
        cells
            .iter()
            .map(|c| Some(c.to_string()))
            .collect::<Vec<_>>()
    };
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        simple_rows(&client, "SELECT n, s FROM sums").await,
        vec![row(&["2", "5"])]
    );
    client
        .batch_execute("INSERT INTO kv VALUES ('b', 20), ('c', 30); FLUSH")
        .await
        .expect("insert");
    assert_eq!(
        simple_rows(&client, "SELECT n, s FROM sums").await,
        vec![row(&["3", "53"])]
    );
    assert_eq!(
        simple_rows(&client, "SELECT odd, n FROM per_v ORDER BY odd").await,
        vec![row(&["0", "2"]), row(&["1", "1"])]
    );
    client
        .batch_execute("DELETE FROM kv WHERE k = 'a'; FLUSH")
        .await
        .expect("delete");
    assert_eq!(
        simple_rows(&client, "SELECT n, s FROM sums").await,
        vec![row(&["2", "50"])]
    );
    assert_eq!(
        simple_rows(&client, "SELECT odd, n FROM per_v ORDER BY odd").await,
        vec![row(&["0", "2"])]
    );
}

/// A memory table is a changelog source for materialized views: INSERT, UPDATE and DELETE on
/// it reach the views' jobs, which keep running; a view over a view follows too. After each
/// change `FLUSH` waits for the views, which then hold the batch answer over the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_memory_table_follow_its_inserts_updates_and_deletes() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE t (k VARCHAR, v BIGINT) WITH ('connector' = 'memory'); \
             INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3)",
        )
        .await
        .expect("create");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_k AS \
             SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS low FROM t GROUP BY k",
        )
        .await
        .expect("create per_k");
    // A view over the view: its input retracts, MAX keeps value counts.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW totals AS \
             SELECT COUNT(*) AS keys, SUM(n) AS n, MAX(s) AS high FROM per_k",
        )
        .await
        .expect("create totals");
    let check = |what: &'static str| {
        let client = &client;
        async move {
            client.batch_execute("FLUSH").await.expect("flush");
            let view = simple_rows(client, "SELECT k, n, s, low FROM per_k ORDER BY k").await;
            let batch = simple_rows(
                client,
                "SELECT k, COUNT(*), SUM(v), MIN(v) FROM t GROUP BY k ORDER BY k",
            )
            .await;
            assert_eq!(view, batch, "per_k after {what}");
            let totals = simple_rows(client, "SELECT keys, n, high FROM totals").await;
            let batch = simple_rows(
                client,
                "SELECT COUNT(*), SUM(n), MAX(s) FROM \
                 (SELECT k, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY k)",
            )
            .await;
            assert_eq!(totals, batch, "totals after {what}");
        }
    };
    check("the first rows").await;
    client
        .batch_execute("INSERT INTO t VALUES ('a', 10), ('d', 4), ('d', 40)")
        .await
        .expect("insert");
    check("an insert").await;
    // The UPDATE and DELETE tags count the rows changed.
    let updated = client
        .execute("UPDATE t SET v = v * 100 WHERE k = 'a'", &[])
        .await
        .expect("update");
    assert_eq!(updated, 2);
    check("an update").await;
    let deleted = client
        .execute("DELETE FROM t WHERE k = 'b' OR v = 40", &[])
        .await
        .expect("delete");
    assert_eq!(deleted, 2);
    check("a delete").await;
    // The minimum of d (4, then 40) goes back up when 4 is updated away.
    client
        .batch_execute("UPDATE t SET v = 7 WHERE v = 4")
        .await
        .expect("update");
    check("an update of a minimum").await;
    assert_eq!(
        simple_rows(&client, "SELECT k, n, s, low FROM per_k ORDER BY k").await,
        vec![
            ["a", "2", "1100", "100"]
                .map(|c| Some(c.to_string()))
                .to_vec(),
            ["c", "1", "3", "3"].map(|c| Some(c.to_string())).to_vec(),
            ["d", "1", "7", "7"].map(|c| Some(c.to_string())).to_vec(),
        ]
    );
    // A large change keeps the views busy for a while: FLUSH waits for them.
    client
        .batch_execute(
            "SET 'table.dml-sync' = 'true'; \
             INSERT INTO t SELECT 'k' || CAST(i % 5000 AS VARCHAR), i \
             FROM (SELECT unnest(range(0, 200000)) AS i)",
        )
        .await
        .expect("insert many");
    check("a large insert").await;
    client
        .batch_execute("DELETE FROM t WHERE v >= 1000 AND v < 200000")
        .await
        .expect("delete many");
    check("a large delete").await;
    // Other tables refuse UPDATE and DELETE, naming which tables take them.
    client.batch_execute(BIDS).await.expect("create bid");
    let err = client
        .batch_execute("DELETE FROM bid WHERE auction = 1")
        .await
        .expect_err("a nexmark table cannot be changed");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("DELETE changes tables kept in memory"),
        "{message}"
    );
    // Conditions DataFusion would not hand to the table are refused, not dropped (which would
    // change every row); a WHERE that is always false changes nothing.
    client
        .batch_execute("CREATE TABLE keep (k VARCHAR) WITH ('connector' = 'memory'); INSERT INTO keep VALUES ('c')")
        .await
        .expect("create keep");
    let err = client
        .batch_execute("DELETE FROM t WHERE k IN (SELECT k FROM keep)")
        .await
        .expect_err("a subquery in a DELETE");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("not supported yet"), "{message}");
    // A view whose query cannot take changes (here a join of two memory tables) reads its
    // tables once, as before, instead of being refused.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW joined AS SELECT t.k, t.v FROM t JOIN keep ON t.k = keep.k",
        )
        .await
        .expect("create joined");
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        simple_rows(&client, "SELECT k, v FROM joined").await,
        vec![vec![Some("c".to_string()), Some("3".to_string())]]
    );
    assert_eq!(
        client
            .execute("DELETE FROM t WHERE false", &[])
            .await
            .expect("delete"),
        0
    );
    assert_eq!(
        client
            .execute("DELETE FROM t WHERE 1 = 0", &[])
            .await
            .expect("delete"),
        0
    );
    // A view's own table is written by its job: changing it would make the view wrong.
    let err = client
        .batch_execute("UPDATE per_k SET n = 0")
        .await
        .expect_err("an UPDATE of a view");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("being written by a running job"),
        "{message}"
    );
    // EXPLAIN of a DELETE changes nothing.
    client
        .batch_execute("EXPLAIN DELETE FROM t")
        .await
        .expect("explain");
    check("an EXPLAIN").await;
    // A view holds every type a query produces: times, intervals, lists.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW typed AS SELECT k, TIME '10:00:01' AS t, \
             INTERVAL '2' HOUR AS i, make_array(v, v + 1) AS l FROM t WHERE v < 10",
        )
        .await
        .expect("create typed");
    client.batch_execute("FLUSH").await.expect("flush");
    let typed = simple_rows(&client, "SELECT k, t, i, l FROM typed ORDER BY k, l").await;
    assert_eq!(
        typed,
        simple_rows(
            &client,
            "SELECT k, TIME '10:00:01', INTERVAL '2' HOUR, make_array(v, v + 1) FROM t \
             WHERE v < 10 ORDER BY k, 4"
        )
        .await
    );
    assert_eq!(typed.len(), 12, "{typed:?}");
    // a 100, c 3, d 7 and the large insert's 1000 rows below 1000.
    assert_eq!(
        simple_rows(&client, "SELECT COUNT(*) FROM t").await[0][0].as_deref(),
        Some("1003")
    );
}

/// A materialized view over an updating query (a GROUP BY without a window) holds the query's
/// current result: while its job reads an unbounded stream every auction is in it once, and
/// over a bounded stream (`execution.runtime-mode` = `streaming`) it ends as the batch answer.
/// A plain SELECT of the query shows its changelog, `op` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_view_of_an_updating_query_holds_its_current_result() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_auction AS \
             SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction",
        )
        .await
        .expect("create materialized view");
    let mut auctions = 0u64;
    for _ in 0..600 {
        let rows = simple_rows(
            &client,
            "SELECT COUNT(*), COUNT(DISTINCT auction), SUM(bids) FROM per_auction",
        )
        .await;
        let value = |i: usize| {
            rows[0][i]
                .as_deref()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0)
        };
        // Each auction once: its old rows were taken back as its count grew.
        assert_eq!(value(0), value(1), "{rows:?}");
        auctions = value(0);
        if auctions >= 10 && value(2) > auctions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(auctions >= 10, "auctions in the view: {auctions}");
    client
        .batch_execute("DROP MATERIALIZED VIEW per_auction")
        .await
        .expect("drop");

    // A bounded stream, read as a stream: the view ends as the batch answer.
    client
        .batch_execute(
            "CREATE TABLE few (auction BIGINT, price BIGINT) WITH ('connector' = 'nexmark', \
             'nexmark.table.type' = 'bid', 'events.num' = '20000', 'throttle' = 'false')",
        )
        .await
        .expect("create");
    let batch = simple_rows(
        &client,
        "SELECT COUNT(DISTINCT auction), COUNT(*), MAX(price) FROM few",
    )
    .await;
    client
        .batch_execute("SET 'execution.runtime-mode' = 'streaming'")
        .await
        .expect("set");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW few_per_auction AS \
             SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM few GROUP BY auction",
        )
        .await
        .expect("create materialized view");
    let mut view = Vec::new();
    for _ in 0..600 {
        view = simple_rows(
            &client,
            "SELECT COUNT(*), SUM(bids), MAX(top) FROM few_per_auction",
        )
        .await;
        if view == batch {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view, batch);
    // The query itself, over the wire: its changelog, with the op column first.
    let messages = client
        .simple_query("SELECT auction, COUNT(*) FROM few GROUP BY auction")
        .await
        .expect("changelog");
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows[0].columns()[0].name(), "op");
    let inserts = rows.iter().filter(|r| r.get(0) == Some("+I")).count();
    let deletes = rows.iter().filter(|r| r.get(0) == Some("-D")).count();
    assert_eq!(deletes, 0);
    // Every auction is inserted once; every other row is an update pair.
    assert_eq!(Some(inserts.to_string().as_str()), batch[0][0].as_deref());
    assert_eq!((rows.len() - inserts) % 2, 0);
}

/// A regular join whose result changes (a LEFT JOIN of two streams, read as a stream) is
/// described over the extended protocol as it is sent: its changelog, `op` first; the
/// changelog ends in the batch answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changing_join_is_described_as_its_changelog() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE l (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
               WITH ('connector' = 'datagen', 'number-of-rows' = '20', \
                     'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '20'); \
             CREATE TABLE r (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
               WITH ('connector' = 'datagen', 'number-of-rows' = '10', \
                     'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '10'); \
             SET 'execution.runtime-mode' = 'streaming'",
        )
        .await
        .expect("create");
    let statement = client
        .prepare("SELECT l.k AS lk, r.k AS rk FROM l LEFT JOIN r ON l.k = r.k")
        .await
        .expect("prepare");
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["op", "lk", "rk"]);
    let rows = client.query(&statement, &[]).await.expect("query");
    let mut state: std::collections::BTreeMap<(i64, Option<i64>), i64> = Default::default();
    for row in &rows {
        let op: String = row.get(0);
        let key = (row.get::<_, i64>(1), row.get::<_, Option<i64>>(2));
        *state.entry(key).or_default() += if op.starts_with('+') { 1 } else { -1 };
    }
    state.retain(|_, n| *n != 0);
    let want: std::collections::BTreeMap<(i64, Option<i64>), i64> =
        (1..=20).map(|k| ((k, (k <= 10).then_some(k)), 1)).collect();
    assert_eq!(state, want);
}

/// Drivers' habits: INSERT with parameters, SHOW and DESCRIBE through the extended protocol,
/// a statement prepared before its table changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_inserts_shows_and_replans() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT, name VARCHAR) WITH ('connector' = 'memory')")
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2)")
        .await
        .expect("prepare insert");
    for (id, name) in [(1i64, "a"), (2, "b")] {
        let n = client
            .execute(&insert, &[&id, &name])
            .await
            .expect("insert");
        assert_eq!(n, 1);
    }
    let rows = client
        .query("SELECT name FROM t ORDER BY id", &[])
        .await
        .expect("select");
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["a", "b"]);
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("show")
        .get(0);
    assert!(version.starts_with("16"), "{version}");
    let parallelism: String = client
        .query_one("SHOW parallelism", &[])
        .await
        .expect("show setting")
        .get(0);
    assert_eq!(parallelism, "2");
    let described = client.query("DESCRIBE t", &[]).await.expect("describe");
    assert_eq!(described.len(), 2);
    // Prepared, then the table is replaced: the statement reads the new one.
    let count = client
        .prepare("SELECT COUNT(*) FROM t")
        .await
        .expect("prepare");
    client
        .batch_execute(
            "DROP TABLE t; CREATE TABLE t (id BIGINT, name VARCHAR) WITH ('connector' = 'memory')",
        )
        .await
        .expect("replace");
    let n: i64 = client.query_one(&count, &[]).await.expect("count").get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_view_names_and_duplicates_are_checked() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    let view = |name: &str| {
        format!(
            "CREATE MATERIALIZED VIEW {name} AS SELECT window_start, COUNT(*) AS n \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end"
        )
    };
    let e = client
        .simple_query(&view("v--x"))
        .await
        .expect_err("bad name");
    assert_eq!(code(&e), SqlState::SYNTAX_ERROR.code(), "{e}");
    client.simple_query(&view("v")).await.expect("create");
    let e = client
        .simple_query(&view("V"))
        .await
        .expect_err("duplicate");
    assert_eq!(code(&e), SqlState::DUPLICATE_TABLE.code(), "{e}");
    client
        .simple_query("DROP MATERIALIZED VIEW v")
        .await
        .expect("drop");
    client
        .simple_query("DROP MATERIALIZED VIEW IF EXISTS v")
        .await
        .expect("drop if exists");
    client.simple_query(&view("v")).await.expect("create again");
    let jobs = simple_rows(&client, "SHOW JOBS").await;
    let states: Vec<Option<&str>> = jobs.iter().map(|j| j[2].as_deref()).collect();
    assert_eq!(states, vec![Some("canceled"), Some("running")]);
    let ids: Vec<Option<&str>> = jobs.iter().map(|j| j[0].as_deref()).collect();
    assert_eq!(ids, vec![Some("1"), Some("2")]);
}

/// With a state directory, a restarted server has its tables, views and materialized views
/// again, resumes its jobs (same ids) and not the canceled ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_views_and_jobs_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8 path").to_string();
    let open = |state: String| serve_with_state(state, Duration::from_millis(200));
    let (port, stop, running) = open(state.clone()).await;
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("bids");
    client
        .batch_execute(
            "CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
             CREATE TABLE gone (x BIGINT) WITH ('connector' = 'memory');
             DROP TABLE gone;
             CREATE VIEW expensive AS SELECT auction, price FROM bid WHERE price > 1000",
        )
        .await
        .expect("ddl");
    let insert = "INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
        DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end";
    // Job 1 is planned with a setting of its session's, which its restart must plan with too.
    client
        .batch_execute(
            "SET 'table.exec.state.ttl' = '1 h'; SET datafusion.optimizer.max_passes = 5",
        )
        .await
        .expect("set");
    client.simple_query(insert).await.expect("job 1");
    client
        .batch_execute("SET 'table.exec.state.ttl' = '0'; SET datafusion.optimizer.max_passes = 3")
        .await
        .expect("reset");
    client.simple_query(insert).await.expect("job 2");
    client.simple_query("CANCEL JOB 2").await.expect("cancel");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_second AS SELECT window_start, COUNT(*) AS bids \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end",
        )
        .await
        .expect("view");
    drop(client);
    let _ = stop.send(());
    running.await.expect("stopped").expect("clean stop");

    // The log remembers job 1's setting and no other job's.
    let log = std::fs::read_to_string(dir.path().join("catalog.jsonl")).expect("catalog log");
    let with_ttl: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#"["table.exec.state.ttl","3600000ms"]"#))
        .collect();
    assert_eq!(with_ttl.len(), 1, "{log}");
    assert!(with_ttl[0].contains(r#""id":1"#), "{log}");
    assert!(
        with_ttl[0].contains(r#"["datafusion.optimizer.max_passes","5"]"#),
        "{log}"
    );

    let (port, _stop, _running) = open(state).await;
    let client = connect(port).await;
    let tables: Vec<String> = simple_rows(
        &client,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' \
         ORDER BY table_name",
    )
    .await
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect();
    assert_eq!(tables, vec!["bid", "expensive", "out", "per_second"]);
    let jobs = simple_rows(&client, "SHOW JOBS").await;
    let summary: Vec<(Option<String>, Option<String>)> =
        jobs.iter().map(|j| (j[0].clone(), j[2].clone())).collect();
    // Job 1 resumed under its id; job 2 stays canceled (not restarted); the view's job is new.
    assert_eq!(
        summary,
        vec![
            (Some("1".into()), Some("running".into())),
            (Some("4".into()), Some("running".into())),
        ]
    );
    let mut windows = 0;
    for _ in 0..600 {
        let rows = simple_rows(&client, "SELECT COUNT(*), MIN(bids) FROM per_second").await;
        windows = rows[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
        if windows >= 2 {
            assert_eq!(rows[0][1].as_deref(), Some("920"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(windows >= 2, "the view fills again: {windows}");
}

/// With a password, clients log in with SCRAM-SHA-256; a wrong password or user is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_login() {
    let server = Server::new(SabotConfig {
        parallelism: 1,
        checkpoint_interval: None,
        ..SabotConfig::default()
    })
    .await
    .expect("server");
    server.require_login("alice", "s3cret");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(server.run(listener, std::future::pending()));
    let login = |user: &str, password: &str| {
        let conn = format!("host=127.0.0.1 port={port} user={user} password={password}");
        async move { tokio_postgres::connect(&conn, NoTls).await }
    };
    let (client, connection) = login("alice", "s3cret").await.expect("right password");
    tokio::spawn(connection);
    assert_eq!(
        simple_rows(&client, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
    for (user, password) in [("alice", "wrong"), ("bob", "s3cret")] {
        let e = login(user, password).await.err().expect("refused");
        assert_eq!(code(&e), SqlState::INVALID_PASSWORD.code(), "{user}: {e}");
    }
}

/// A client whose login failed can run nothing: a query sent right after a refused SASL
/// mechanism (pgwire marks the connection ready for queries and only shuts the socket's
/// writing half) does not run, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_runs_nothing() {
    let server = Server::new(SabotConfig {
        parallelism: 1,
        checkpoint_interval: None,
        ..SabotConfig::default()
    })
    .await
    .expect("server");
    server.require_login("alice", "s3cret");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(server.run(listener, std::future::pending()));

    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(b"user\0alice\0\0");
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    socket.write_all(&packet).await.expect("startup");
    // AuthenticationSASL ('R', code 10).
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    assert_eq!(buf.first(), Some(&b'R'), "{:?}", &buf[..n]);
    // An unknown mechanism, and a statement right behind it.
    let mut sasl = b"BOGUS\0".to_vec();
    sasl.extend_from_slice(&(-1_i32).to_be_bytes());
    let mut bytes = vec![b'p'];
    bytes.extend_from_slice(&((sasl.len() + 4) as u32).to_be_bytes());
    bytes.extend_from_slice(&sasl);
    let statement = b"CREATE TABLE intruder (a INT) WITH ('connector' = 'memory')\0";
    bytes.push(b'Q');
    bytes.extend_from_slice(&((statement.len() + 4) as u32).to_be_bytes());
    bytes.extend_from_slice(statement);
    socket.write_all(&bytes).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("SFATAL\0"), "{text:?}");
    assert!(!text.contains("CREATE"), "{text:?}");
    // Logged in properly: no such table.
    let conn = format!("host=127.0.0.1 port={port} user=alice password=s3cret");
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.expect("login");
    tokio::spawn(connection);
    let e = client
        .simple_query("SELECT * FROM intruder")
        .await
        .expect_err("no table intruder");
    assert!(
        e.to_string().contains("intruder") || code(&e) == "42P01",
        "{e}"
    );
}

/// The other types in text format: numeric, time, timestamptz, interval, arrays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_types_in_text() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    let rows = simple_rows(
        &client,
        "SELECT CAST(1.25 AS DECIMAL(10, 2)), CAST('01:02:03' AS TIME), \
         arrow_cast(TIMESTAMP '2024-01-02 03:04:05.25', 'Timestamp(Microsecond, Some(\"UTC\"))'), \
         INTERVAL '1' DAY, \
         make_array(1, 2, 3), make_array('a', 'b')",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some("1.25"));
    // Times and timestamps as PostgreSQL prints them: no zero fraction, the zone's offset.
    assert_eq!(rows[0][1].as_deref(), Some("01:02:03"));
    assert_eq!(rows[0][2].as_deref(), Some("2024-01-02 03:04:05.25+00"));
    assert_eq!(rows[0][3].as_deref(), Some("1 day"));
    assert_eq!(rows[0][4].as_deref(), Some("{1,2,3}"));
    assert_eq!(rows[0][5].as_deref(), Some("{a,b}"));
}

/// Runs a client program from `tests/clients` against the server; its output when it succeeds.
async fn client_program(program: &str, args: Vec<String>) -> String {
    let program = program.to_string();
    let shown = format!("{program} {}", args.join(" "));
    // coreutils' timeout stops a client that hangs.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .arg("300")
            .arg(&program)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
    })
    .await
    .expect("client task")
    .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{shown} failed ({}; scripts/setup installs the test clients)\nstdout:\n{stdout}\n\
         stderr:\n{stderr}",
        out.status
    );
    stdout
}

/// psycopg 3 reads every type in text and binary format, binds parameters, sees SQLSTATEs,
/// fills a stream with executemany and streams a query (tests/clients/psycopg_client.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_reads_every_type_and_binds_parameters() {
    let (port, _stop) = start().await;
    let out = client_program(
        "python3",
        vec!["tests/clients/psycopg_client.py".into(), port.to_string()],
    )
    .await;
    assert!(out.contains("psycopg ok"), "{out}");
}

/// The PostgreSQL JDBC driver reads every type in text and binary format, binds parameters,
/// sees SQLSTATEs and runs a batch of inserts (tests/clients/JdbcClient.java). The driver's jar
/// is Debian's libpostgresql-jdbc-java, or `SABOT_JDBC_JAR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_reads_every_type_and_binds_parameters() {
    let (port, _stop) = start().await;
    let jar = std::env::var("SABOT_JDBC_JAR")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".to_string());
    assert!(
        std::path::Path::new(&jar).exists(),
        "the JDBC driver {jar} is missing: scripts/setup installs libpostgresql-jdbc-java"
    );
    let out = client_program(
        "java",
        vec![
            "-cp".into(),
            jar,
            "tests/clients/JdbcClient.java".into(),
            port.to_string(),
        ],
    )
    .await;
    assert!(out.contains("jdbc ok"), "{out}");
}

/// psql lists databases (`\l`), completes a table name on Tab (typed into psql running in a
/// pseudo-terminal), and its session parameters are settable and shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_databases_and_completes_table_names() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE clicks_by_region (k BIGINT) WITH ('connector' = 'memory'); \
             CREATE TABLE orders (k BIGINT) WITH ('connector' = 'memory')",
        )
        .await
        .expect("create");
    let (ok, out, err) = psql(port, "\\l").await;
    assert!(ok, "{err}");
    assert!(out.contains("postgres|"), "{out}");
    let shown = client_program(
        "python3",
        vec![
            "tests/clients/psql_completion.py".into(),
            port.to_string(),
            "clicks_b".into(),
        ],
    )
    .await;
    assert!(
        shown.trim_end().ends_with("SELECT * FROM clicks_by_region"),
        "psql completed to: {shown:?}"
    );
    // Drivers' session parameters: accepted when Sabot can honour them, refused otherwise.
    client
        .batch_execute("SET extra_float_digits = 3; SET application_name = 'app'")
        .await
        .expect("driver settings");
    assert_eq!(
        simple_rows(&client, "SHOW application_name").await,
        vec![vec![Some("app".into())]]
    );
    let e = client
        .batch_execute("SET TimeZone = 'Europe/Paris'")
        .await
        .expect_err("only UTC");
    assert_eq!(code(&e), SqlState::INVALID_PARAMETER_VALUE.code(), "{e}");
    assert_eq!(
        simple_rows(&client, "SHOW TIME ZONE").await,
        vec![vec![Some("UTC".into())]]
    );
}

/// A job killed with its server (its task aborted, as in a crash) resumes from its last
/// checkpoint when the server starts again on the same state directory, and its filesystem
/// sink then holds exactly the rows of an uninterrupted run: none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumed_after_a_restart_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir
        .path()
        .join("state")
        .to_str()
        .expect("utf-8")
        .to_string();
    let out = dir.path().join("out").to_str().expect("utf-8").to_string();
    let open = |state: String| serve_with_state(state, Duration::from_millis(100));
    // 40 000 events in real time at 10 000 per second: four seconds of wall time.
    let ddl = format!(
        "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3), \
         WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH ('connector' = \
         'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '10000', 'events.num' = '40000', \
         'base-time' = '2024-01-01 00:00:00'); \
         CREATE TABLE per_window (auction BIGINT, window_end TIMESTAMP(3), n BIGINT, top BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv')"
    );
    let window = "SELECT auction, window_end, COUNT(*), MAX(price) FROM TABLE(TUMBLE(TABLE bid, \
                  DESCRIPTOR(date_time), INTERVAL '100' MILLISECOND)) \
                  GROUP BY auction, window_start, window_end";
    let (port, stop, running) = open(state.clone()).await;
    let client = connect(port).await;
    client.batch_execute(&ddl).await.expect("ddl");
    client
        .simple_query(&format!("INSERT INTO per_window {window}"))
        .await
        .expect("job");
    // Stop the server once the job has checkpointed and before its input ends.
    let mut checkpointed = false;
    for _ in 0..200 {
        let jobs = simple_rows(&client, "SHOW JOBS").await;
        assert_eq!(jobs[0][2].as_deref(), Some("running"), "{jobs:?}");
        if jobs[0][6].as_deref().is_some_and(|c| c != "0") {
            checkpointed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(checkpointed, "the job checkpointed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    let _ = stop.send(());
    running.await.expect("stopped").expect("clean stop");

    let (port, _stop, _running) = open(state).await;
    let client = connect(port).await;
    let mut finished = false;
    for _ in 0..600 {
        let jobs = simple_rows(&client, "SHOW JOBS").await;
        assert_eq!(jobs[0][0].as_deref(), Some("1"));
        if jobs[0][2].as_deref() == Some("finished") {
            finished = true;
            break;
        }
        assert_eq!(jobs[0][2].as_deref(), Some("running"), "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(finished, "the resumed job finished");
    // Old checkpoints are collected, directories and all: `checkpoint.retained` (3) are left
    // once the deletion of an aborted in-flight one (at the end of input) is done.
    let job_dir = std::path::Path::new(&dir.path().join("state/jobs/job-1")).to_path_buf();
    let checkpoints = || {
        std::fs::read_dir(&job_dir)
            .expect("job checkpoint directory")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("chk-"))
            })
            .count()
    };
    for _ in 0..100 {
        if checkpoints() <= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(checkpoints(), 3, "checkpoints left in {job_dir:?}");
    // What the sink holds, read back through a filesystem source, against the same windows
    // computed by one uninterrupted query over the same (deterministic) events.
    let mut written = simple_rows(&client, "SELECT * FROM per_window").await;
    let mut expected = simple_rows(&client, window).await;
    written.sort();
    expected.sort();
    assert!(expected.len() > 1000, "{} windows", expected.len());
    assert_eq!(written.len(), expected.len());
    assert_eq!(written, expected);
}

// ---- Regression tests of the robustness issue, named after their causes. ----

/// The server's message of an error.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// `SELECT 1+1+...` with 20,000 terms overflowed the stack of the connection's task and
/// aborted the whole server; a WHERE with 10,000 ORed comparisons did too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_too_deep_to_plan_is_refused_and_long_or_chains_plan() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    let deep = format!("SELECT {}", vec!["1"; 20_000].join("+"));
    let e = client.simple_query(&deep).await.expect_err("too deep");
    assert_eq!(code(&e), "54001", "{e}");
    assert!(message(&e).contains("statement too complex"), "{e}");
    let e = client.query(&deep, &[]).await.expect_err("too deep");
    assert_eq!(code(&e), "54001", "extended: {e}");
    let casts = format!("SELECT 1{}", "::BIGINT".repeat(30_000));
    let e = client.simple_query(&casts).await.expect_err("too deep");
    assert_eq!(code(&e), "54001", "{e}");
    // 10,000 ORs are balanced and plan: 0..9999 hold 5,000 even numbers.
    client
        .batch_execute("CREATE TABLE n (a BIGINT); INSERT INTO n VALUES (2), (4), (7), (20000)")
        .await
        .expect("table");
    let ors: Vec<String> = (0..10_000).step_by(2).map(|i| format!("a = {i}")).collect();
    let ors = format!("SELECT COUNT(*) FROM n WHERE {}", ors.join(" OR "));
    assert_eq!(
        simple_rows(&client, &ors).await,
        vec![vec![Some("2".into())]]
    );
    // Another session, and this one, go on.
    let other = connect(port).await;
    assert_eq!(
        simple_rows(&other, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
    assert_eq!(
        simple_rows(&client, "SELECT 2").await,
        vec![vec![Some("2".into())]]
    );
}

/// `SET sessioné = 1` panicked the connection's task (the settings parser cut the text by
/// byte count inside `é`): the client only saw its connection drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_with_a_multibyte_name_is_an_error_and_the_session_goes_on() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    for sql in ["SET sessioné = 1", "SET localé TO 2", "SET time zoné 'UTC'"] {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert!(!code(&e).is_empty(), "{sql}: {e}");
        assert_eq!(
            simple_rows(&client, "SELECT 1").await,
            vec![vec![Some("1".into())]],
            "after {sql}"
        );
    }
}

/// `'2024-01-01 00:00:10+05'::timestamptz` came back as a plain timestamp (oid 1114) without
/// its offset: the session had no time zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamptz_keeps_its_type_and_prints_in_utc() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    let sql = "SELECT '2024-01-01 00:00:10+05'::timestamptz AS t";
    assert_eq!(
        simple_rows(&client, sql).await,
        vec![vec![Some("2023-12-31 19:00:10+00".into())]]
    );
    let statement = client.prepare(sql).await.expect("prepare");
    assert_eq!(
        statement.columns()[0].type_(),
        &tokio_postgres::types::Type::TIMESTAMPTZ
    );
    let row = client.query_one(&statement, &[]).await.expect("binary");
    let t: std::time::SystemTime = row.get(0);
    let seconds = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    // 2023-12-31 19:00:10 UTC.
    assert_eq!(seconds, 1_704_049_210);
    assert_eq!(
        simple_rows(&client, "SHOW TimeZone").await,
        vec![vec![Some("UTC".into())]]
    );
}

/// A materialized view whose job failed (a division by zero) read as an empty view, with no
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_job_failed_answers_with_the_jobs_error() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE d (a BIGINT); INSERT INTO d VALUES (1), (0); \
             CREATE MATERIALIZED VIEW ratio AS SELECT 10 / a AS r FROM d",
        )
        .await
        .expect("view");
    let mut failed = false;
    for _ in 0..200 {
        let jobs = simple_rows(&client, "SHOW JOBS").await;
        if jobs[0][2]
            .as_deref()
            .is_some_and(|s| s.starts_with("failed"))
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the view's job did not fail");
    let e = client
        .simple_query("SELECT * FROM ratio")
        .await
        .expect_err("a failed view");
    assert_eq!(code(&e), "22012", "{e}");
    assert!(message(&e).contains("materialized view ratio"), "{e}");
    let e = client
        .query("SELECT * FROM ratio", &[])
        .await
        .expect_err("extended");
    assert_eq!(code(&e), "22012", "{e}");
}

/// psycopg sends `DEALLOCATE ALL` before DDL once it prepared statements; Sabot answered
/// "Prepared statement 'all' does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_and_discard_all_reset_the_session() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    let statement = client
        .prepare("SELECT $1::BIGINT + 1")
        .await
        .expect("prepare");
    let row = client.query_one(&statement, &[&41i64]).await.expect("run");
    assert_eq!(row.get::<_, i64>(0), 42);
    client
        .batch_execute("DEALLOCATE ALL")
        .await
        .expect("deallocate all");
    let e = client
        .query_one(&statement, &[&1i64])
        .await
        .expect_err("the statement is gone");
    assert!(!code(&e).is_empty(), "{e}");
    let again = client
        .prepare("SELECT $1::BIGINT * 2")
        .await
        .expect("prepare");
    assert_eq!(
        client
            .query_one(&again, &[&21i64])
            .await
            .expect("run")
            .get::<_, i64>(0),
        42
    );
    client
        .batch_execute(
            "DEALLOCATE PREPARE ALL; SET 'parallelism' = '7'; SET application_name = 'x'",
        )
        .await
        .expect("deallocate prepare all");
    let e = client
        .simple_query("DEALLOCATE nothing_here")
        .await
        .expect_err("unknown statement");
    assert_eq!(code(&e), "26000", "{e}");
    client
        .batch_execute("DISCARD ALL")
        .await
        .expect("discard all");
    assert_eq!(
        simple_rows(&client, "SHOW parallelism").await,
        vec![vec![Some("2".into())]]
    );
    assert_eq!(
        simple_rows(&client, "SHOW application_name").await,
        vec![vec![Some("".into())]]
    );
}

/// `CREATE MATERIALIZED VIEW IF NOT EXISTS` and a column list went to DataFusion: "Materialized
/// views not supported".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_view_if_not_exists_and_column_list() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE s (k BIGINT, v BIGINT); INSERT INTO s VALUES (1, 10), (2, 20); \
             CREATE MATERIALIZED VIEW IF NOT EXISTS mv (key, doubled) AS SELECT k, v * 2 FROM s",
        )
        .await
        .expect("create");
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = simple_rows(&client, "SELECT key, doubled FROM mv ORDER BY key").await;
        if rows.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("20".into())],
            vec![Some("2".into()), Some("40".into())]
        ]
    );
    // Again with IF NOT EXISTS: a notice, no second job; without: 42P07.
    client
        .batch_execute("CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1")
        .await
        .expect("exists, skipped");
    assert_eq!(simple_rows(&client, "SHOW JOBS").await.len(), 1);
    let e = client
        .simple_query("CREATE MATERIALIZED VIEW mv AS SELECT 1")
        .await
        .expect_err("exists");
    assert_eq!(code(&e), "42P07", "{e}");
    let e = client
        .simple_query("CREATE MATERIALIZED VIEW three (a, b, c) AS SELECT k, v FROM s")
        .await
        .expect_err("too many names");
    assert!(message(&e).contains("names 3 columns"), "{e}");
}

/// `SELECT 1` named its column `Int64(1)`: PostgreSQL says `?column?`, a function call is
/// named after the function and a cast after its type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_columns_are_named_as_postgres_names_them() {
    let (port, _stop) = start().await;
    let client = connect(port).await;
    client
        .batch_execute("CREATE TABLE c (a BIGINT); INSERT INTO c VALUES (1)")
        .await
        .expect("table");
    let sql = "SELECT 1, count(*), a, a AS b, '1'::int, upper('x') FROM c GROUP BY a";
    let names = |messages: Vec<SimpleQueryMessage>| -> Vec<String> {
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::RowDescription(columns) => {
                    Some(columns.iter().map(|c| c.name().to_string()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    let expected = ["?column?", "count", "a", "b", "int4", "upper"];
    assert_eq!(
        names(client.simple_query(sql).await.expect("simple")),
        expected
    );
    let statement = client.prepare(sql).await.expect("extended");
    let extended: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(extended, expected);
}

/// `sabot serve --memory-limit`: one pool for every query and job; a query whose window state
/// would exceed it fails with SQLSTATE 53200 instead of taking the process down, and other
/// sessions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_with_53200() {
    let (port, _stop, _running) = serve(SabotConfig {
        parallelism: 2,
        checkpoint_interval: None,
        memory_limit: Some(16 << 20),
        ..SabotConfig::default()
    })
    .await;
    let client = connect(port).await;
    client
        .batch_execute(
            "CREATE TABLE many (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH \
             ('connector' = 'datagen', 'number-of-rows' = '3000000', 'rows-per-second' = '1000000000', \
              'fields.k.min' = '0', 'fields.k.max' = '1000000000000')",
        )
        .await
        .expect("table");
    // Millions of keys in one day-long window: far more than 16 MiB of state.
    let e = client
        .simple_query(
            "SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE many, DESCRIPTOR(ts), INTERVAL '1' DAY)) \
             GROUP BY k, window_start, window_end",
        )
        .await
        .expect_err("over the limit");
    assert_eq!(code(&e), "53200", "{e:?}");
    assert!(message(&e).contains("memory limit"), "{}", message(&e));
    let other = connect(port).await;
    assert_eq!(
        simple_rows(&other, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
    // Small state fits.
    assert_eq!(
        simple_rows(
            &client,
            "SELECT COUNT(*) FROM (SELECT k FROM many LIMIT 1000)"
        )
        .await,
        vec![vec![Some("1000".into())]]
    );
}

/// `GET path` against `port` over a raw socket: the status line and the body.
async fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample of metric `name` whose labels contain `labels`, if any.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `sabot serve --metrics-listen`: while a windowed job runs, a scrape shows each partition
/// of its window operator with rows in, rows out, the watermark and its lag, and the state's
/// size, labelled by job, operator and partition; SHOW JOBS shows the job's state size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_while_a_job_runs() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--parallelism",
            "2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (port, metrics_port) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let port_after = |line: &str, marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse::<u16>().ok())
        };
        let (mut port, mut metrics) = (None, None);
        for line in lines.by_ref().map_while(Result::ok) {
            metrics = metrics.or_else(|| port_after(&line, "metrics at http://127.0.0.1:"));
            port = port.or_else(|| port_after(&line, "listening on 127.0.0.1:"));
            if port.is_some() && metrics.is_some() {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        (
            port.expect("the listening address"),
            metrics.expect("the metrics address"),
        )
    })
    .await
    .expect("reader");
    let client = connect(port).await;
    client.batch_execute(BIDS).await.expect("create");
    client
        .batch_execute(
            "CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole')",
        )
        .await
        .expect("sink");
    client
        .batch_execute(
            "INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
             DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end",
        )
        .await
        .expect("start the job");
    let (status, _) = http_get(metrics_port, "/nothing").await;
    assert!(status.contains("404"), "{status}");
    let partition = |p: usize| format!(r#"operator="WindowAggregateExec-0",partition="{p}"}}"#);
    let mut text = String::new();
    for _ in 0..1200 {
        let (status, body) = http_get(metrics_port, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        text = body;
        // Each partition fires on its own watermark: wait until both have fired, since one
        // may start (and see its first watermark) later than the other on a busy machine.
        let fired = |p: usize| {
            sample(&text, "sabot_operator_rows_out_total", &partition(p)).unwrap_or(0.0) > 0.0
                && sample(&text, "sabot_operator_watermark_seconds", &partition(p)).is_some()
        };
        if (0..2).all(fired) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in 0..2 {
        let labels = partition(p);
        let value = |name: &str| sample(&text, name, &labels);
        // The generator makes 1000 bids per second of event time, unthrottled: by the time
        // windows fired, each partition read rows and its watermark is in January 2024, so
        // far behind the wall clock.
        assert!(
            value("sabot_operator_rows_in_total").unwrap_or(0.0) > 0.0,
            "{text}"
        );
        let watermark = value("sabot_operator_watermark_seconds")
            .unwrap_or_else(|| panic!("partition {p} has no watermark after two minutes:\n{text}"));
        assert!(
            (1_704_067_200.0..1_704_067_200.0 + 86_400.0).contains(&watermark),
            "{text}"
        );
        assert!(
            value("sabot_operator_watermark_lag_seconds").unwrap() > 86_400.0,
            "{text}"
        );
        assert!(value("sabot_operator_state_bytes").is_some(), "{text}");
        assert!(value("sabot_operator_late_rows_total").is_some(), "{text}");
    }
    assert!(
        text.contains("# TYPE sabot_operator_rows_in counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Open windows hold state: SHOW JOBS sums it over the job's operators.
    let mut state_bytes = 0;
    for _ in 0..100 {
        let jobs = simple_rows(&client, "SHOW JOBS").await;
        state_bytes = jobs[0][9]
            .as_deref()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0);
        if state_bytes > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(state_bytes > 0, "SHOW JOBS shows no state");
    client.batch_execute("CANCEL JOB 1").await.expect("cancel");
    // The canceled job's series go away with its operators.
    let mut gone = false;
    for _ in 0..100 {
        let (_, body) = http_get(metrics_port, "/metrics").await;
        if !body.contains("WindowAggregateExec") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the canceled job's series are still served");
    // SAFETY: sending SIGTERM to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}
