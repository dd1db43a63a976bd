//! `firewall serve --metrics ADDR:PORT`: the live filter's counters for Prometheus, and
//! `reload` on SIGHUP, in one long-running process.
//!
//! A scrape reads the maps then and there ([`Snapshot::take`]), so what it shows is what
//! `firewall list` would show at that moment; nothing is cached or polled in between.
//! The process does not own the filter: SIGTERM or SIGINT ends it, the filter stays up.
//!
//! The runtime is tokio's, on one thread: each HTTP connection is a task of its own (a
//! slow client holds up only itself), the map reads and reloads run on its blocking pool.
//! At most [`MAX_CONNECTIONS`] connections are open at once, [`MAX_PER_CLIENT`] from one
//! address: past that a connection is closed as soon as it is accepted, and counted, so
//! that no client can run the process out of descriptors or keep Prometheus out.
//! Long-running work is one of `run`'s `Tasks` (HTTP; with `--log-drops` the kernel's
//! drop events, see [`crate::view::drops`]; the peers written as DNS names, followed
//! (`follow_names`) and learned from the answers the filter holds for it (`learning`)),
//! and every gauge of one series read from a
//! snapshot is emitted in `gauges` (the maps' memory, a series a map, beside them).
use std::{
    collections::HashMap,
    convert::Infallible,
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

mod learning;

use firewall_common::Line;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderMap, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text, text},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::ConstGauge,
        info::Info,
    },
    registry::Registry,
};
use sd_notify::NotifyState;
use tokio::{
    io::{Interest, unix::AsyncFd},
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

use crate::{
    compile::{LineKind, chain_name},
    kernel::Filter,
    names::{Heard, Names},
    ops::{self, Apply, LiveError},
    view::{
        drops,
        names::NameView,
        snapshot::{LineStats, Snapshot},
    },
};

/// A client that has not sent its request's headers by then is disconnected (an idle
/// kept-alive connection too: a scraper simply connects again).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lasts longer, so that clients that never read their answers cannot
/// pile up (a scrape takes milliseconds).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// The most connections open at once: each may live up to `CONNECTION_DEADLINE`, and
/// a descriptor each, where the process may have 1,024.
pub const MAX_CONNECTIONS: usize = 128;
/// The most from one client address, so that one client cannot take every connection.
pub const MAX_PER_CLIENT: usize = 8;
/// OpenMetrics 1.0, for scrapers that ask for it (Prometheus does).
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often the drop events' task looks whether the filter is still up.
const DOWN_CHECK: Duration = Duration::from_millis(200);
const INDEX: &str = "firewall serve: the filter's counters, in Prometheus' text format, are at /metrics\n";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bad --metrics address {0:?}: give ADDR:PORT, such as 127.0.0.1:9100 or [::1]:9100")]
    BadAddress(String),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("starting the runtime")]
    Runtime(#[source] io::Error),
    #[error("bind {addr}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("listening for {signal}")]
    Signal { signal: &'static str, source: io::Error },
    #[error("{task} ended")]
    TaskEnded {
        task: String,
        #[source]
        why: TaskEnd,
    },
}

/// Why one of `serve`'s long-running tasks ended (they run until the process ends).
#[derive(Debug, thiserror::Error)]
pub enum TaskEnd {
    #[error("it is empty")]
    NoTasks,
    #[error("it returned")]
    Returned,
    #[error("no filter is up on {0} any more")]
    FilterDown(String),
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// Boxed: a `LiveError` is large, and every task's `Result` would carry its size.
    #[error(transparent)]
    Live(Box<LiveError>),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, ServeError>;

/// `--metrics ADDR:PORT`, checked.
pub fn address(text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| ServeError::BadAddress(text.to_owned()))
}

/// Checks the filter, then serves until SIGTERM or SIGINT; with
/// `log_drops`, drop events at most that many a second go to stderr too.
pub fn serve(filter: &Filter, addr: SocketAddr, log_drops: Option<u32>) -> Result<()> {
    // A filter whose maps or state cannot be read is refused now, not at the first scrape.
    let file = Snapshot::take(filter.pins())?.state.policy_file;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServeError::Runtime)?;
    // Dropping the runtime drops the drop events' task, which turns them off.
    runtime.block_on(run(addr, filter.iface().to_owned(), file, log_drops))
}

/// The process's own counters.
#[derive(Debug, Default)]
struct Reloads {
    applied: Counter,
    failed: Counter,
    /// Drop events received (`--log-drops`).
    drop_events: Counter,
    /// Connections closed at once: over [`MAX_CONNECTIONS`] or [`MAX_PER_CLIENT`].
    connections_refused: Counter,
    /// DNS answers the filter held for `serve` (`[dns] learn`), all handed back.
    dns_answers_held: Counter,
    /// The policy's names they taught an address their own answer lacks (one a name and
    /// answer), from a resolver the policy names.
    dns_names_learned: Counter,
}

/// What the tasks share.
struct Shared {
    /// The filter's interface: its pins are looked up again for every reading, so a
    /// filter taken down and put up again is served again.
    iface: String,
    reloads: Reloads,
    /// One map reading or reload at a time: a reload rewrites the state files that a
    /// reading reads.
    busy: Mutex<()>,
}

/// How a long-running task ends: only with an error (they serve until the process ends).
type Task = std::result::Result<(), ServeError>;

/// The long-running tasks, each with its name for the error should it end.
#[derive(Default)]
struct Tasks {
    set: JoinSet<Task>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Tasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = Task> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end (none does unless it fails), as the error.
    async fn ended(&mut self) -> ServeError {
        let Some(ended) = self.set.join_next_with_id().await else {
            return ServeError::TaskEnded { task: "the task list".into(), why: TaskEnd::NoTasks };
        };
        let name = |id| self.names.get(&id).copied().unwrap_or("a task").to_owned();
        match ended {
            Ok((_, Err(err))) => err,
            Ok((id, Ok(()))) => ServeError::TaskEnded { task: name(id), why: TaskEnd::Returned },
            Err(err) => ServeError::TaskEnded { task: name(err.id()), why: err.into() },
        }
    }
}

async fn run(
    addr: SocketAddr,
    iface: String,
    file: std::path::PathBuf,
    log_drops: Option<u32>,
) -> Result<()> {
    // The handlers exist before anything is announced: until then a SIGHUP would kill us.
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| ServeError::Signal { signal: name, source })
    };
    let mut hangup = listen(SignalKind::hangup(), "SIGHUP")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    let shared = Arc::new(Shared { iface, reloads: Reloads::default(), busy: Mutex::new(()) });

    // The long-running tasks.
    let mut tasks = Tasks::default();
    tasks.spawn("serving HTTP", http(listener, shared.clone()));
    if let Some(rate) = log_drops {
        tasks.spawn("reading drop events", drop_events(shared.clone(), rate));
    }
    tasks.spawn("following DNS names", follow_names(shared.clone()));
    tasks.spawn("learning from DNS answers", learning::learn_from_answers(shared.clone()));

    eprintln!(
        "firewall serve: metrics at http://{bound}/metrics for the filter on {}; SIGHUP reloads {}",
        shared.iface,
        file.display()
    );
    // Ready once the port is bound: a unit ordered after this one can scrape at once.
    tell_systemd(&[NotifyState::Ready, NotifyState::Status(&format!("metrics at http://{bound}/metrics"))]);
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&shared).await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            err = tasks.ended() => return Err(err),
        }
    }
    tell_systemd(&[NotifyState::Stopping]);
    eprintln!("firewall serve: stopped; the filter on {} stays up", shared.iface);
    Ok(())
}

/// Tells systemd, under a `Type=notify` unit, how the service stands: nothing happens
/// without one (no `$NOTIFY_SOCKET`). A failure is said, not fatal: the unit then times
/// out, and this line in its journal says why.
fn tell_systemd(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(false, states) {
        eprintln!("firewall serve: telling systemd failed: {err}");
    }
}

/// `--log-drops`: the events, each a line on stderr, counted. The ring is read on the
/// runtime's thread whenever it is readable (tokio's `AsyncFd`); what may block (turning
/// the events on, reading the listing) runs on the blocking pool. The events go off again
/// as the task is dropped, when the runtime ends; the task ends (and with it the process,
/// as it did) once the filter is down.
async fn drop_events(shared: Arc<Shared>, rate: u32) -> Task {
    let ended = |why: TaskEnd| ServeError::TaskEnded { task: "reading drop events".into(), why };
    let iface = shared.iface.clone();
    let started = tokio::task::spawn_blocking(move || -> std::result::Result<_, LiveError> {
        let filter = Filter::open(Some(&iface))?;
        let events = drops::Events::open(filter.pins())?;
        let on = drops::Listening::start(&filter, rate)?;
        let snapshot = Snapshot::take(filter.pins()).ok();
        Ok((filter.pins().clone(), events, on, snapshot))
    })
    .await;
    let (pins, events, _on, mut snapshot) = match started {
        Ok(Ok(started)) => started,
        Ok(Err(err)) => return Err(ended(TaskEnd::Live(Box::new(err)))),
        Err(err) => return Err(ended(err.into())),
    };
    // SAFETY: the descriptor is the ring map's, owned by `events`, which the AsyncFd owns
    // in turn: open, and the same, for as long as the AsyncFd lives.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|e| ended(io::Error::from(e).into()))?;
    let mut received = Vec::new();
    loop {
        if !pins.is_up() {
            return Err(ended(TaskEnd::FilterDown(pins.iface.clone())));
        }
        // Woken as events arrive; the timeout only to notice the filter going down.
        let Ok(ready) = tokio::time::timeout(DOWN_CHECK, ring.readable_mut()).await else {
            continue;
        };
        let mut ready = ready.map_err(|e| ended(e.into()))?;
        ready.get_inner_mut().drain(|event| received.push(event));
        ready.clear_ready();
        // A line a reload added since: read the listing again.
        let known = |s: &Snapshot| received.iter().all(|e| drops::names(s, e));
        if !snapshot.as_ref().is_some_and(known) {
            let pins = pins.clone();
            snapshot = tokio::task::spawn_blocking(move || Snapshot::take(&pins).ok()).await.ok().flatten();
        }
        for event in received.drain(..) {
            shared.reloads.drop_events.inc();
            eprintln!("firewall serve: {}", drops::render(&event, &pins.iface, snapshot.as_ref()));
        }
    }
}

/// The peers written as DNS names, followed: each name asked again as its answer's TTL
/// runs out (and an address's grace ends), the policy in force applied again when what
/// the names hold changed (`names::settle`), a line on stderr for each change and each
/// failure. The names are the filter's record's, so a policy without names costs a
/// file read every [`NAMES_IDLE`].
async fn follow_names(shared: Arc<Shared>) -> Task {
    loop {
        let iface = shared.iface.clone();
        let now = crate::unix_now();
        let record =
            tokio::task::spawn_blocking(move || Names::load(&crate::kernel::pins::Pins::for_iface(&iface)))
                .await
                .unwrap_or_default();
        let names: Vec<&str> = record.names.keys().map(String::as_str).collect();
        let next = record.next_event(&names).unwrap_or(u64::MAX);
        if next > now {
            let wait = Duration::from_secs(next - now).min(NAMES_IDLE);
            tokio::time::sleep(wait).await;
            continue;
        }
        let due = record.due(&names, now);
        let answers = if due.is_empty() { Vec::new() } else { crate::names::ask_async(&due).await };
        let task = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let _busy = task.busy.lock().unwrap_or_else(PoisonError::into_inner);
            crate::names::settle(&Filter::open(Some(&task.iface))?, Heard::Asked(answers), crate::unix_now())
        })
        .await;
        // However the round went, the next is at least this far off.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match done {
            Ok(Ok((asked, applied))) => tell_names(&shared.iface, &asked, applied.as_ref()),
            Ok(Err(err)) => {
                eprintln!("firewall serve: following DNS names: {}", crate::one_line(&err));
                tokio::time::sleep(NAMES_IDLE).await;
            }
            Err(err) => eprintln!("firewall serve: following DNS names: {err}"),
        }
    }
}

/// How long `follow_names` waits at most between two looks at the record: a reload may
/// have added names.
const NAMES_IDLE: Duration = Duration::from_secs(5);

/// A line on stderr for each name whose addresses changed, or whose resolvers failed.
fn tell_names(iface: &str, asked: &[crate::names::Asked], applied: Option<&crate::kernel::maps::Applied>) {
    for a in asked {
        let list = |addrs: &[IpAddr]| addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if let crate::names::Answer::Failed(why) = &a.answer {
            eprintln!(
                "firewall serve: {}: no answer ({why}); it keeps the {} addresses it held",
                a.name, a.held
            );
        }
        if !a.change.added.is_empty() || !a.change.removed.is_empty() {
            eprintln!(
                "firewall serve: {} on {iface}: added {}; removed {}",
                a.name,
                if a.change.added.is_empty() { "none".into() } else { list(&a.change.added) },
                if a.change.removed.is_empty() { "none".into() } else { list(&a.change.removed) },
            );
        }
    }
    if let Some(applied) = applied {
        eprintln!(
            "firewall serve: the names' addresses applied on {iface}: {} entries added or changed, {} removed, {} flows ended",
            applied.added, applied.removed, applied.flows_removed
        );
    }
}

/// SIGHUP: what `firewall reload` does, with one line on stderr either way. systemd
/// hears of it as a reload: the unit shows "reloading" until it is done.
async fn reload(shared: &Arc<Shared>) {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => tell_systemd(&[NotifyState::Reloading, now]),
        Err(_) => tell_systemd(&[NotifyState::Reloading]),
    }
    reload_policy(shared).await;
    tell_systemd(&[NotifyState::Ready]);
}

async fn reload_policy(shared: &Arc<Shared>) {
    let task = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _busy = task.busy.lock().unwrap_or_else(PoisonError::into_inner);
        ops::reload::reload(&Filter::open(Some(&task.iface))?, None, Apply::default())
    })
    .await;
    match done {
        // The reload logs itself (crate::log): to stderr here without a journal.
        Ok(Ok(_)) => {
            shared.reloads.applied.inc();
        }
        Ok(Err(err)) => {
            shared.reloads.failed.inc();
            eprintln!("firewall serve: {}", crate::one_line(&err));
        }
        Err(err) => {
            shared.reloads.failed.inc();
            eprintln!("firewall serve: the reload failed: {err}");
        }
    }
}

/// The connections open, in all and by client address.
#[derive(Default)]
struct Slots {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One connection's place among the open ones, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    /// A place for a connection from `client`, or `None` when it is over a cap.
    fn take(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, by_client) = &mut *open;
        let mine = by_client.get(&client).copied().unwrap_or(0);
        if *total >= MAX_CONNECTIONS || mine >= MAX_PER_CLIENT {
            return None;
        }
        *total += 1;
        by_client.insert(client, mine + 1);
        Some(Slot { slots: self.clone(), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, by_client) = &mut *open;
        *total -= 1;
        if let Some(mine) = by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

/// Accepts connections, each served in a task of its own, within the caps.
async fn http(listener: TcpListener, shared: Arc<Shared>) -> Task {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let slots = Arc::new(Slots::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: the clients already connected go on.
            Err(err) => {
                eprintln!("firewall serve: accept: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(slot) = slots.take(peer.ip().to_canonical()) else {
            // Closed at once: its descriptor is free again.
            drop(stream);
            shared.reloads.connections_refused.inc();
            continue;
        };
        let shared = shared.clone();
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| respond(request, shared.clone())),
        );
        tokio::spawn(async move {
            // A client that goes away or times out ends its own connection, nothing more.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

type Body = Full<Bytes>;

fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    text_response(status, "text/plain; charset=utf-8", body)
}

async fn respond(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> std::result::Result<Response<Body>, Infallible> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    Ok(match request.uri().path() {
        "/metrics" => metrics(&shared, wants_openmetrics(request.headers())).await,
        "/" => plain(StatusCode::OK, INDEX),
        _ => plain(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"),
    })
}

/// Whether the client's Accept header asks for OpenMetrics (with a weight above zero);
/// everyone else, curl included, gets Prometheus' classic text format.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts
                .any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        },
    )
}

/// `GET /metrics`: a snapshot of the maps, encoded.
async fn metrics(shared: &Arc<Shared>, openmetrics: bool) -> Response<Body> {
    let task = shared.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let _busy = task.busy.lock().unwrap_or_else(PoisonError::into_inner);
        Snapshot::take(Filter::open(Some(&task.iface))?.pins())
    })
    .await;
    let snapshot = match taken {
        Ok(Ok(snapshot)) => snapshot,
        // The filter went down, say: the scrape fails, Prometheus marks the target down.
        Ok(Err(err)) => return plain(StatusCode::SERVICE_UNAVAILABLE, format!("firewall serve: {err}\n")),
        Err(err) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("firewall serve: reading the maps failed: {err}\n"),
            );
        }
    };
    match exposition(snapshot, &shared.iface, &shared.reloads, openmetrics) {
        Ok(body) if openmetrics => text_response(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, body),
        Ok(body) => text_response(StatusCode::OK, prometheus_text::CONTENT_TYPE, body),
        Err(fmt::Error) => plain(StatusCode::INTERNAL_SERVER_ERROR, "firewall serve: encoding failed\n"),
    }
}

/// The whole exposition: the snapshot's metrics and the process's own counters.
fn exposition(
    snapshot: Snapshot,
    iface: &str,
    reloads: &Reloads,
    openmetrics: bool,
) -> std::result::Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register("firewall_reloads", "Reloads on SIGHUP that were applied", reloads.applied.clone());
    registry.register(
        "firewall_reload_failures",
        "Reloads on SIGHUP that failed, leaving the filter as it was",
        reloads.failed.clone(),
    );
    registry.register(
        "firewall_drop_events",
        "Drop events received from the kernel (--log-drops; sampled, at most its rate a second)",
        reloads.drop_events.clone(),
    );
    registry.register(
        "firewall_serve_connections_refused",
        "Connections closed as soon as accepted: 128 were open, or 8 from that client address",
        reloads.connections_refused.clone(),
    );
    registry.register(
        "firewall_dns_answers_held",
        "DNS answers the filter held for serve to learn from ([dns] learn), each handed back",
        reloads.dns_answers_held.clone(),
    );
    registry.register(
        "firewall_dns_names_learned",
        "Names of the policy a held DNS answer taught an address their own answer lacks (one a name and answer)",
        reloads.dns_names_learned.clone(),
    );
    registry.register_collector(Box::new(SnapshotMetrics { snapshot, iface: iface.to_owned() }));
    let mut out = String::new();
    if openmetrics {
        text::encode(&mut out, &registry)?;
    } else {
        prometheus_text::encode(&mut out, &registry)?;
    }
    Ok(out)
}

/// One gauge read from a snapshot.
struct Gauge {
    name: &'static str,
    help: &'static str,
    value: u64,
}

/// Every gauge of one series the snapshot gives, in one place: a new one (the
/// blocklist's entries) is one more element here. The maps' memory, a series a map, is
/// encoded beside them (`SnapshotMetrics::encode`).
fn gauges(snapshot: &Snapshot) -> Vec<Gauge> {
    vec![
        Gauge {
            name: "firewall_conntrack_entries",
            help: "Flows in the established conntrack table (heard both ways)",
            value: snapshot.established.entries,
        },
        Gauge {
            name: "firewall_conntrack_capacity",
            help: "The established conntrack table's size ([conntrack] max_entries)",
            value: snapshot.established.capacity,
        },
        Gauge {
            name: "firewall_conntrack_half_open_entries",
            help: "Flows in the half-open conntrack table (not heard both ways yet)",
            value: snapshot.half_open.entries,
        },
        Gauge {
            name: "firewall_conntrack_half_open_capacity",
            help: "The half-open conntrack table's size ([conntrack] max_half_open)",
            value: snapshot.half_open.capacity,
        },
        Gauge {
            name: "firewall_blocklist_entries",
            help: "Addresses and prefixes blocked now (firewall block)",
            value: snapshot.blocks.len() as u64,
        },
        Gauge {
            name: "firewall_block_list_entries",
            help: "Prefixes the named lists hold together (firewall block --from); each list's packets are on its own lines",
            value: snapshot.lists.iter().map(|list| list.entries as u64).sum(),
        },
        Gauge {
            name: "firewall_block_lists_expired",
            help: "Named lists past their deadline (firewall block --from --for), blocking nothing: a feed that stopped refreshing",
            value: snapshot.lists.iter().filter(|list| list.expired).count() as u64,
        },
        Gauge {
            name: "firewall_audit",
            help: "1 in audit mode (what would drop is counted and passed), else 0",
            value: u64::from(snapshot.audit),
        },
        Gauge {
            name: "firewall_attached",
            help: "1 while the programs are on the interface, 0 once it was removed (or removed and made again): the counters stand still then; firewall up attaches the filter afresh",
            value: u64::from(snapshot.detached.is_none()),
        },
    ]
}

/// The labels of one listing line, unique among the lines and stable across reloads:
/// its chain, its rule's name (or the built-in's), its target, and which of the rule's
/// lines it is: `new` (the rule's own line), `established` (its returns, in the other
/// chain), an anti-spoof entry by its list and prefix (`source 10.0.0.0/8`), or
/// `builtin`; a blocklist's entry by its prefix (`block 192.0.2.7`), a named list by its
/// name (`list feed`).
fn line_labels(line: &LineStats) -> [(&'static str, String); 4] {
    let which = match &line.line.kind {
        LineKind::Builtin(_) => "builtin".to_owned(),
        LineKind::Antispoof(entry) => entry.to_string(),
        LineKind::Blocklist(prefix) => format!("block {prefix}"),
        LineKind::NamedList(name) => format!("list {name}"),
        LineKind::Rule { line: Line::New, .. } => "new".to_owned(),
        LineKind::Rule { line: Line::Established, .. } => "established".to_owned(),
    };
    [
        ("chain", chain_name(line.chain).to_owned()),
        ("rule", line.line.kind.name().to_owned()),
        ("target", line.line.target.to_owned()),
        ("line", which),
    ]
}

/// The metrics a snapshot gives, encoded at scrape time.
#[derive(Debug)]
struct SnapshotMetrics {
    snapshot: Snapshot,
    iface: String,
}

impl Collector for SnapshotMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), fmt::Error> {
        let snapshot = &self.snapshot;
        let lines = snapshot.lines();
        let labels: Vec<_> = lines.iter().map(|line| line_labels(line)).collect();
        for (name, help, value) in [
            (
                "firewall_packets",
                "Packets counted on each line of the listing, as firewall list -v shows them",
                (|c: &LineStats| c.counter.packets) as fn(&LineStats) -> u64,
            ),
            ("firewall_bytes", "Bytes counted on each line of the listing", |c: &LineStats| c.counter.bytes),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (line, labels) in lines.iter().zip(&labels) {
                ConstCounter::new(value(line)).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "firewall_conntrack_evictions",
            "Entries each conntrack table's LRU took back to make room (expired ones among them)",
            None,
            MetricType::Counter,
        )?;
        for (table, stats) in [("established", &snapshot.established), ("half_open", &snapshot.half_open)] {
            ConstCounter::new(stats.evicted).encode(family.encode_family(&[("table", table)])?)?;
        }
        for gauge in gauges(snapshot) {
            let metric = encoder.encode_descriptor(gauge.name, gauge.help, None, MetricType::Gauge)?;
            ConstGauge::new(gauge.value).encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "firewall_map_memory_bytes",
            "Each map's memory as the kernel accounts it (memlock in its fdinfo), in bytes",
            None,
            MetricType::Gauge,
        )?;
        for (map, bytes) in &snapshot.memory.0 {
            ConstGauge::new(*bytes).encode(family.encode_family(&[("map", *map)])?)?;
        }
        for (metric, help, value) in [
            (
                "firewall_name_addresses",
                "The addresses each peer written as a DNS name holds now (those within [dns] grace included)",
                (|n: &NameView| n.addresses.len() as u64) as fn(&NameView) -> u64,
            ),
            (
                "firewall_name_failing",
                "1 while a name's resolvers give no answer (it keeps the addresses it held), else 0",
                |n: &NameView| u64::from(n.failure.is_some()),
            ),
            ("firewall_name_answer_age_seconds", "Seconds since a name's last answer", |n: &NameView| {
                n.answered_secs_ago.unwrap_or(0)
            }),
        ] {
            if snapshot.names.is_empty() {
                break;
            }
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for name in &snapshot.names {
                ConstGauge::new(value(name))
                    .encode(family.encode_family(&[("name", name.name.as_str())])?)?;
            }
        }
        let info = Info::new([
            ("iface", self.iface.clone()),
            ("policy", snapshot.state.policy_file.display().to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ]);
        let metric = encoder.encode_descriptor(
            "firewall",
            "The filter served: its interface and policy file, and this binary's version",
            None,
            MetricType::Info,
        )?;
        info.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::Path, time::Instant};

    use firewall_common::{Counter as Count, MAX_COUNTERS};

    use super::*;
    use crate::{compile::Ids, kernel::pins::LiveState, policy::parse};

    /// A snapshot of `examples/NAME` as `up` would number it, every counter distinct
    /// (id n holds n packets and 1000 n bytes).
    fn snapshot(name: &str) -> Snapshot {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
        let policy = parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let counters = (0..u64::from(MAX_COUNTERS)).map(|n| Count { packets: n, bytes: 1000 * n }).collect();
        let mut snapshot = Snapshot::from_parts(
            policy,
            LiveState {
                policy_file: path,
                ids,
                programs: 0,
                runtime_only: false,
                mode: None,
                applied_with: Default::default(),
                offloads_to_restore: Vec::new(),
            },
            counters,
            Instant::now(),
        );
        snapshot.established.entries = 7;
        snapshot.half_open = crate::kernel::maps::TableStats { entries: 5, capacity: 16_384, evicted: 3 };
        snapshot.memory =
            crate::kernel::maps::MapMemory(vec![("ALLOW_EXACT", 16_384), ("CONNTRACK", 7_340_032)]);
        snapshot
    }

    /// `name{labels} value` lines of a family, as (labels, value).
    fn samples(text: &str, name: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once(' ')?;
                (labels.is_empty() || labels.starts_with('{')).then(|| (labels.to_owned(), value.to_owned()))
            })
            .collect()
    }

    #[test]
    fn every_line_is_one_sample_with_labels_unique_and_its_counter() {
        for name in ["tight.toml", "dual-stack.toml"] {
            let snapshot = snapshot(name);
            let lines = snapshot.lines();
            let text = exposition(snapshot.clone(), "eth0", &Reloads::default(), false).unwrap();
            let packets = samples(&text, "firewall_packets_total");
            let bytes = samples(&text, "firewall_bytes_total");
            assert_eq!(packets.len(), lines.len(), "{name}: one sample a line:\n{text}");
            assert_eq!(bytes.len(), lines.len(), "{name}");
            let unique: BTreeSet<&String> = packets.iter().map(|(labels, _)| labels).collect();
            assert_eq!(unique.len(), lines.len(), "{name}: labels repeat:\n{text}");
            for ((line, (labels, value)), (_, byte_value)) in lines.iter().zip(&packets).zip(&bytes) {
                assert_eq!(*value, line.counter.packets.to_string(), "{name}: {labels}");
                assert_eq!(*byte_value, line.counter.bytes.to_string(), "{name}: {labels}");
            }
            let has = |labels: &str| packets.iter().any(|(l, _)| l == labels);
            assert!(has(r#"{chain="INPUT",rule="ssh-in",target="ACCEPT",line="new"}"#), "{text}");
            assert!(has(r#"{chain="OUTPUT",rule="ssh-in",target="ACCEPT",line="established"}"#), "{text}");
            assert!(has(r#"{chain="INPUT",rule="antispoof",target="DROP",line="source 10.0.0.0/8"}"#));
            assert!(has(r#"{chain="INPUT",rule="antispoof",target="DROP",line="destination 224.0.0.0/4"}"#));
            assert!(has(r#"{chain="FORWARD",rule="policy",target="DROP",line="builtin"}"#), "{text}");
            assert!(text.contains("\nfirewall_conntrack_entries 7\n"), "{text}");
            assert!(text.contains("\nfirewall_conntrack_capacity 65536\n"), "{text}");
            assert!(text.contains("\nfirewall_conntrack_half_open_entries 5\n"), "{text}");
            assert!(text.contains("\nfirewall_conntrack_half_open_capacity 16384\n"), "{text}");
            assert!(
                text.contains("\nfirewall_conntrack_evictions_total{table=\"established\"} 0\n"),
                "{text}"
            );
            assert!(text.contains("\nfirewall_conntrack_evictions_total{table=\"half_open\"} 3\n"), "{text}");
            assert!(text.contains("\nfirewall_map_memory_bytes{map=\"ALLOW_EXACT\"} 16384\n"), "{text}");
            assert!(text.contains("\nfirewall_map_memory_bytes{map=\"CONNTRACK\"} 7340032\n"), "{text}");
            assert!(text.contains("# TYPE firewall_map_memory_bytes gauge\n"), "{text}");
            assert!(text.contains("\nfirewall_reloads_total 0\n"), "{text}");
            assert!(text.contains("\nfirewall_reload_failures_total 0\n"), "{text}");
            assert!(text.contains("# TYPE firewall_packets_total counter\n"), "{text}");
            assert!(!text.contains("# EOF"), "the classic format has no EOF:\n{text}");
        }
    }

    #[test]
    fn openmetrics_has_its_types_and_ends_with_eof() {
        let reloads = Reloads::default();
        reloads.applied.inc();
        let text = exposition(snapshot("tight.toml"), "eth0", &reloads, true).unwrap();
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert!(text.contains("# TYPE firewall_packets counter\n"), "{text}");
        assert!(text.contains("# TYPE firewall info\n"), "{text}");
        assert!(text.contains("\nfirewall_reloads_total 1\n"), "{text}");
        let info = samples(&text, "firewall_info");
        assert_eq!(info.len(), 1, "{text}");
        assert!(info[0].0.starts_with(r#"{iface="eth0",policy=""#) && info[0].1 == "1", "{info:?}");
    }

    #[test]
    fn connections_are_capped_in_all_and_by_client() {
        let slots = Arc::new(Slots::default());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let mine: Vec<Slot> = (0..MAX_PER_CLIENT).map(|_| slots.take(one).unwrap()).collect();
        assert!(slots.take(one).is_none(), "a ninth from one client");
        let mut others: Vec<Slot> = (0..MAX_CONNECTIONS - MAX_PER_CLIENT)
            .map(|i| slots.take(IpAddr::from([198, 51, 100, (i / MAX_PER_CLIENT) as u8])).unwrap())
            .collect();
        assert!(slots.take("203.0.113.1".parse().unwrap()).is_none(), "past the global cap");
        others.pop();
        assert!(slots.take("203.0.113.1".parse().unwrap()).is_some(), "a place freed is free");
        drop(mine);
        assert!(slots.take(one).is_some());
        assert_eq!(slots.open.lock().unwrap().1.get(&one), None, "given back on drop");
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_openmetrics(&headers)
        };
        // What Prometheus 2 sends.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!accept("*/*"));
        assert!(!accept("text/plain; version=0.0.4"));
        assert!(!accept("application/openmetrics-text; q=0"));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }
}
