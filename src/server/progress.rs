//! The protocol's side of a running call: `notifications/progress` for a
//! client that asked for them, and why a call that was cut short ended.
//!
//! Progress: a `tools/call` whose `_meta` carries a `progressToken` gets a
//! [`Progress`]: the call's tools report to its [`Reporter`] (replacing the
//! latest report, without waiting), and [`run`] sends the latest report as
//! a notification at most once per [`INTERVAL`], from the end of the first
//! one on, alongside the call and on its own task. A call answered within
//! that first interval sends nothing: its answer says all a notification
//! would. A call that did send some sends a last one, the row count
//! ([`Finish`]), after every earlier one and before the answer. Progress
//! only ever increases, as the protocol requires: a report that does not
//! count further than the last one sent is not sent. A call without a
//! token has no reporter and no timer.
//!
//! Where the notifications go is rmcp's: over stdio, onto stdout between
//! the responses; with `--sessions`, onto the SSE stream of the request
//! that carries the token; in stateless HTTP (JSON answers), the first
//! notification turns the answer into an SSE stream that carries the
//! notifications and then the response (rmcp answers with JSON only when
//! the first message it has is the response). So a call that sends none
//! (no token, or answered within the first interval) is answered with
//! plain JSON.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::tools::ToolError;
use crate::tools::progress::{Reporter, Update};

/// No notification before a call has run this long, and then at most one
/// per this long, besides the last one.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// How long a notification may wait for the transport (a client that does
/// not read its stream): then no more are sent for that call.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The progress notifications of one call, before it runs.
pub struct Progress {
    reporter: Arc<Reporter>,
    updates: watch::Receiver<Update>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

impl Progress {
    /// The notifications of a call that carries `token`.
    pub fn new(peer: Peer<RoleServer>, token: ProgressToken) -> Progress {
        let (reporter, updates) = Reporter::new();
        Progress {
            reporter: Arc::new(reporter),
            updates,
            peer,
            token,
        }
    }
}

/// What was sent while a call ran, for its last notification.
pub struct Finish {
    reporter: Arc<Reporter>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    sent: Sent,
}

/// What the forwarding sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The progress of the last notification sent.
    last: Option<u64>,
    /// The transport still takes notifications.
    open: bool,
}

/// Runs `work` with the reporter of `progress`, when the call carries a
/// token, and forwards its reports meanwhile, on the same task.
pub async fn run<Fut: Future>(
    progress: Option<Progress>,
    work: impl FnOnce(Option<Arc<Reporter>>) -> Fut,
) -> (Fut::Output, Option<Finish>) {
    let Some(Progress {
        reporter,
        updates,
        peer,
        token,
    }) = progress
    else {
        return (work(None).await, None);
    };
    let (output, sent) = {
        let stop = CancellationToken::new();
        let mut forwarding = std::pin::pin!(forward(&peer, &token, updates, &stop));
        let mut work = std::pin::pin!(work(Some(reporter.clone())));
        let mut sent = None;
        let output = loop {
            tokio::select! {
                biased;
                output = &mut work => break output,
                done = &mut forwarding, if sent.is_none() => sent = Some(done),
            }
        };
        // a notification on its way is sent whole, so that the last one
        // follows it
        stop.cancel();
        let sent = match sent {
            Some(sent) => sent,
            None => forwarding.await,
        };
        (output, sent)
    };
    let finish = Finish {
        reporter,
        peer,
        token,
        sent,
    };
    (output, Some(finish))
}

impl Finish {
    /// Sends the call's last report, when any notification went before
    /// it, and returns once the transport has it: the answer follows it.
    pub async fn send(mut self, last: impl FnOnce(&Reporter) -> Update) {
        if self.sent.last.is_some() && self.sent.open {
            let last = last(&self.reporter);
            send(&self.peer, &self.token, last, &mut self.sent).await;
        }
    }
}

/// After the first [`INTERVAL`], sends the latest report whenever it
/// changes, at most once per [`INTERVAL`], until `stop`.
async fn forward(
    peer: &Peer<RoleServer>,
    token: &ProgressToken,
    mut updates: watch::Receiver<Update>,
    stop: &CancellationToken,
) -> Sent {
    let mut sent = Sent {
        last: None,
        open: true,
    };
    let pause = async || {
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = tokio::time::sleep(INTERVAL) => true,
        }
    };
    if !pause().await {
        return sent;
    }
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = updates.changed() => if changed.is_err() { break },
        }
        let update = *updates.borrow_and_update();
        if !send(peer, token, update, &mut sent).await || !pause().await {
            break;
        }
    }
    sent
}

/// Sends `update` unless it counts no further than the last one sent;
/// false once the transport takes no more.
async fn send(
    peer: &Peer<RoleServer>,
    token: &ProgressToken,
    update: Update,
    sent: &mut Sent,
) -> bool {
    if sent.last.is_some_and(|last| update.progress <= last) {
        return true;
    }
    let mut param = ProgressNotificationParam::new(token.clone(), update.progress as f64)
        .with_message(update.message());
    if let Some(total) = update.total {
        param = param.with_total(total as f64);
    }
    match tokio::time::timeout(SEND_TIMEOUT, peer.notify_progress(param)).await {
        Ok(Ok(())) => {
            sent.last = Some(update.progress);
            true
        }
        Ok(Err(_)) | Err(_) => {
            sent.open = false;
            false
        }
    }
}

/// Why a call that failed with `err` was cut short, as
/// `sqlmcp_cancelled_calls_total` labels it; `None` when it was not:
/// - `deadline`: it ran past its statement timeout or the server's deadline;
/// - `shutdown`: the server stopped while it ran (`stopping`);
/// - `disconnect`: the HTTP request of a call without a session closed
///   before the answer (how Streamable HTTP cancels such a call);
/// - `client`: the client cancelled it (`notifications/cancelled`, over
///   stdio or in a session), or ended its session or stdin meanwhile.
pub fn cancel_reason(
    err: &ToolError,
    context: &RequestContext<RoleServer>,
    stopping: &CancellationToken,
) -> Option<&'static str> {
    match err {
        ToolError::Timeout => Some("deadline"),
        ToolError::Cancelled if stopping.is_cancelled() => Some("shutdown"),
        ToolError::Cancelled => {
            let parts = context.extensions.get::<http::request::Parts>();
            Some(match parts {
                Some(parts) if !parts.headers.contains_key("mcp-session-id") => "disconnect",
                _ => "client",
            })
        }
        _ => None,
    }
}
