//! `GET /events/stream`: lifecycle events live, as server-sent events, resumable. Each event
//! carries its id (`id:` line); a client that reconnects with `Last-Event-ID` (browsers and
//! SSE libraries do it by themselves) or `?after=<id>` first gets what it missed from history,
//! then the live events after it: no gap, no duplicate, or an `EventsExpired` event when the
//! id has left retention.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use podlife_core::{Fields, ServedEvent};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{check_params, limits, params, ApiError};
use crate::pipeline::history::EventQuery;
use crate::pipeline::shared::Shared;

/// Missed events replayed on one connection at most; a client further behind gets these, then
/// the stream ends and its automatic reconnect (with the last id) fetches the next ones.
const BACKLOG: usize = 5_000;

/// One event as sent: its full JSON (the store line's) and its id.
fn lifecycle(e: &ServedEvent, json: &str) -> Event {
    Event::default()
        .event("lifecycle")
        .data(json)
        .id(e.seq.to_string())
}

pub async fn stream(
    State(s): State<Arc<Shared>>,
    axum::Extension(shutdown): axum::Extension<CancellationToken>,
    axum::Extension(limiter): axum::Extension<limits::Limiter>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_params(&q, &["uid", "after"])?;
    let uid = q.get("uid").map(|u| params::uid(u)).transpose()?;
    let resume = match q
        .get("after")
        .map(String::as_str)
        .or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()))
    {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad(
                "invalid_after",
                format!("{v:?}: expected an event id (the `id:` of an earlier event)"),
            )
        })?),
        None => None,
    };
    // Held by the stream: its slot is free again when the client goes.
    let Some(permit) = limiter.stream_permit() else {
        return Ok(limits::too_many_streams(limiter.stream_bound()));
    };
    // Subscribe before reading history, so nothing falls between the two.
    let rx = s.live.subscribe();
    let mut first: Vec<Event> = Vec::new();
    let mut last_sent = None;
    let mut backlog_full = false;
    if let Some(after) = resume {
        let (missed, expired) = {
            let inner = s.lock();
            let q = EventQuery {
                since_wall_ns: i128::MIN,
                uid: uid.as_deref(),
                after: Some(after),
                limit: BACKLOG,
            };
            (inner.history.select(&q), inner.history.expired_after(after))
        };
        if expired {
            first.push(Event::default().event("lifecycle").data(
                json!({
                    "type": "EventsExpired",
                    "source": "agent",
                    "after": after.to_string(),
                    "message": "events after this id have left retention; resuming at the oldest kept",
                })
                .to_string(),
            ));
        }
        backlog_full = missed.len() >= BACKLOG;
        for e in &missed {
            first.push(lifecycle(e, &e.to_json(Fields::All)));
        }
        last_sent = Some(missed.last().map_or(after, |e| e.seq));
    }
    let replay = futures_util::stream::iter(first.into_iter().map(Ok::<_, Infallible>));
    if backlog_full {
        // Ends after the backlog (holding its slot until then): the client reconnects with
        // the last id it got and fetches the next part.
        drop(rx);
        let replay = replay.map(move |e| {
            let _slot = &permit;
            e
        });
        return Ok(Sse::new(replay)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let state = (rx, uid, last_sent, (shutdown, permit));
    let live = futures_util::stream::unfold(state, |(mut rx, uid, last_sent, held)| async move {
        loop {
            // The stream ends at shutdown; otherwise it would hold the server open until
            // the pod is killed (the broadcast sender lives as long as the agent).
            let received = tokio::select! {
                _ = held.0.cancelled() => return None,
                r = rx.recv() => r,
            };
            match received {
                Ok(p) => {
                    if uid.as_deref().is_some_and(|u| *p.event.uid != *u) {
                        continue;
                    }
                    // Already sent from history.
                    if last_sent.is_some_and(|l| p.event.seq <= l) {
                        continue;
                    }
                    let sent = lifecycle(&p.event, &p.json);
                    return Some((Ok(sent), (rx, uid, last_sent, held)));
                }
                // A slow client skips what it missed and is told so (it may reconnect with
                // the last id it got to fetch them from history).
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let event = Event::default()
                        .event("lagged")
                        .data(json!({"missed": n}).to_string());
                    return Some((Ok(event), (rx, uid, last_sent, held)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(replay.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response())
}
