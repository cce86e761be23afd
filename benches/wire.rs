//! The Postgres wire protocol server: simple-query round trips per second, extended-protocol
//! (prepared, one parameter) round trips per second, and rows per second streamed to a client,
//! all through tokio-postgres against an in-process server on a loopback port.
//!
//! `cargo bench --bench wire` (prints a table; no criterion: each figure is one timed run after
//! a warm-up).

use std::time::Instant;

use sabot::SabotConfig;
use sabot::server::Server;
use tokio::net::TcpListener;
use tokio_postgres::NoTls;

const ROUND_TRIPS: usize = 5_000;
const ROWS: i64 = 2_000_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = Server::new(SabotConfig {
            parallelism: 1,
            checkpoint_interval: None,
            ..SabotConfig::default()
        })
        .await
        .expect("server");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(server.run(listener, std::future::pending()));
        let (client, connection) =
            tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=sabot"), NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);

        for _ in 0..200 {
            client.simple_query("SELECT 1").await.expect("warm-up");
        }
        let started = Instant::now();
        for _ in 0..ROUND_TRIPS {
            client.simple_query("SELECT 1").await.expect("simple");
        }
        let simple = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();

        let statement = client
            .prepare("SELECT CAST($1 AS BIGINT) + 1")
            .await
            .expect("prepare");
        let started = Instant::now();
        for i in 0..ROUND_TRIPS as i64 {
            let row = client.query_one(&statement, &[&i]).await.expect("extended");
            assert_eq!(row.get::<_, i64>(0), i + 1);
        }
        let extended = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();

        let sql =
            format!("SELECT value, CAST(value AS VARCHAR) AS text FROM generate_series(1, {ROWS})");
        let started = Instant::now();
        let messages = client.simple_query(&sql).await.expect("rows");
        let rows = messages
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        let rows_per_second = rows as f64 / started.elapsed().as_secs_f64();
        assert_eq!(rows as i64, ROWS);

        println!("| measure | per second |");
        println!("|---|---|");
        println!("| simple-query round trips (`SELECT 1`) | {simple:.0} |");
        println!("| extended-protocol round trips (prepared, 1 parameter) | {extended:.0} |");
        println!("| rows streamed to the client (BIGINT + VARCHAR, text) | {rows_per_second:.0} |");
    });
}
