//! How many round trips a call costs, counted on the wire: a proxy between
//! the server and PostgreSQL holds every answer back for a while, so that
//! whatever the server sends without waiting arrives before the first
//! answer leaves. Each time the server sends again after an answer has gone
//! out is one round trip more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::server::{as_caller, call, spawn_app_with, text};
use crate::helpers::{SEATTLE, TestDb};

/// How long the proxy holds PostgreSQL's answers back.
const HOLD: Duration = Duration::from_millis(150);

/// Counts the server's turns to speak on every connection it proxies.
#[derive(Default)]
struct Wire {
    /// Times the server sent after an answer had reached it.
    turns: AtomicUsize,
}

impl Wire {
    async fn start(upstream: u16) -> (Arc<Wire>, u16) {
        let wire = Arc::new(Wire::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counting = wire.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                tokio::spawn(counting.clone().relay(client, server));
            }
        });
        (wire, port)
    }

    async fn relay(self: Arc<Self>, client: TcpStream, server: TcpStream) {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        // whether an answer went out since the client last sent
        let answered = Arc::new(AtomicBool::new(true));
        let heard = answered.clone();
        let upstream = async {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                if heard.swap(false, Ordering::SeqCst) {
                    self.turns.fetch_add(1, Ordering::SeqCst);
                }
                if to_server.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        };
        let downstream = async {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from_server.read(&mut buffer).await {
                tokio::time::sleep(HOLD).await;
                // and whatever else came meanwhile, in the same burst
                let mut burst = buffer[..n].to_vec();
                while let Ok(Ok(more @ 1..)) =
                    tokio::time::timeout(Duration::ZERO, from_server.read(&mut buffer)).await
                {
                    burst.extend_from_slice(&buffer[..more]);
                }
                answered.store(true, Ordering::SeqCst);
                if to_client.write_all(&burst).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(upstream, downstream);
    }

    fn take(&self) -> usize {
        self.turns.swap(0, Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_call_costs_one_round_trip_once_its_statements_are_prepared() {
    let db = Arc::new(TestDb::seeded().await);
    let port = db.app_config().get_ports().first().copied().unwrap_or(5432);
    let (wire, proxy) = Wire::start(port).await;
    let through_proxy = crate::helpers::url_of(&db.app_config())
        .replace(&format!(":{port}/"), &format!(":{proxy}/"))
        .parse()
        .unwrap();
    let app = spawn_app_with(db.clone(), |s| {
        s.database = through_proxy;
        s.pool_size = 1;
    })
    .await;
    let client = as_caller(&app, SEATTLE).await;
    let round_trips = async |tool: &str, arguments: serde_json::Value| {
        wire.take();
        let result = call(&client, tool, arguments).await;
        assert_eq!(result.is_error, Some(false), "{tool}: {}", text(&result));
        wire.take()
    };

    // The connection's first call also prepares the identity statement.
    assert!(round_trips("store_performance", json!({})).await <= 3);
    // A tool's first call prepares its query, pipelined with BEGIN and the
    // identity; then the query and the COMMIT go together.
    let details = json!({"sku": "PWR-DRL-1001"});
    assert_eq!(round_trips("product_details", details.clone()).await, 2);
    // From then on: BEGIN, identity, query and COMMIT in one round trip.
    assert_eq!(round_trips("product_details", details).await, 1);
    assert_eq!(round_trips("store_performance", json!({})).await, 1);

    // Raw SQL: a text seen for the first time is described and its bounding
    // query prepared (pipelined with BEGIN and the identity), then run with
    // the ROLLBACK; the same text again is neither checked nor described.
    let light = |sql: &str| json!({ "postgresql_query": sql });
    round_trips("execute_sales_query", light("SELECT 1 AS loads_the_names")).await;
    let query = "SELECT count(*) AS n FROM retail.orders";
    assert_eq!(round_trips("execute_sales_query", light(query)).await, 2);
    assert_eq!(round_trips("execute_sales_query", light(query)).await, 1);

    // A search whose result may be empty checks the stored vectors after
    // it, so its COMMIT waits for the rows: two round trips.
    let search = json!({"query_description": "cordless drill"});
    round_trips("semantic_search_products", search.clone()).await;
    assert_eq!(round_trips("semantic_search_products", search).await, 2);
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}
