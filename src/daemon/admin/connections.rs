//! The admin endpoint's connections: how many are held, from whom, and
//! which to close when a new one needs room.
//!
//! # Why
//!
//! A connection costs a descriptor whether or not it ever sends a request,
//! and the descriptors the endpoint may take are few (they are kept aside
//! from what downloads need, in `sys::limits`). With a plain cap, whoever
//! opens that many idle connections first (any local user can) shuts
//! everyone else out: probes wait in the listen backlog until the idle ones
//! time out. So the endpoint accepts every connection, and when one more
//! would pass a cap it closes an *idle* one to make room (one that is not
//! inside a request: it never sent a complete head, or is between two
//! requests), the oldest first:
//!
//! - at most [`Limits::per_peer`] connections from one IP address: beyond,
//!   that address's own oldest idle connection goes, so a flood from one
//!   address closes its own connections, not another's;
//! - at most [`Limits::total`] in all: beyond, the oldest idle connection of
//!   the address that holds the most goes.
//!
//! A new connection is closed at once only when every held one is inside a
//! request. A prober that connects and sends its request at once is served
//! however many idle connections others hold: it is the newest, and idle
//! connections are closed oldest first. Connections from loopback all share
//! one address; the total cap and the oldest-first order are what keep
//! local probes answered.
//!
//! To close a connection from outside its task, the registry keeps a
//! duplicate of its socket and shuts the socket down: the connection's
//! task sees the end of its input and ends. (A raw descriptor number would
//! not do: once the connection ends, the number can belong to anything.)
//! Idle connections past their deadline are closed too ([`Connections::reap`]),
//! in case a client trickles a second request head, which actix-web does
//! not time. A connection whose whole request head already waits in its
//! socket, unread, counts as inside a request: a probe is not closed in the
//! instant between its arrival and its first reading.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::os::fd::AsFd as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;

use super::throttle::{Kind, Throttle};

/// The caps and deadlines of the endpoint's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, in all.
    pub total: usize,
    /// Connections held at once from one IP address.
    pub per_peer: usize,
    /// How long a connection may stay idle before its first request.
    pub first_request: Duration,
    /// How long a connection may stay idle after a request.
    pub between_requests: Duration,
}

/// One held connection.
#[derive(Debug)]
struct Entry {
    id: u64,
    peer: IpAddr,
    /// When it was accepted, or when its last request ended.
    since: Instant,
    /// Requests in progress on it.
    busy: u32,
    /// Whether a request ended on it.
    served: bool,
    /// A duplicate of its socket, to shut it down with (none if it could
    /// not be duplicated: it then cannot be closed from here).
    socket: Option<TcpStream>,
}

/// Whether a whole request head waits unread in `socket`: its
/// connection's task has not read it yet (the worker accepts a batch of
/// connections before their tasks first run), so it is a request about to
/// be served, not an idle connection.
fn head_waiting(socket: &TcpStream) -> bool {
    let mut buffer = [0u8; 2048];
    matches!(socket.peek(&mut buffer), Ok(n) if buffer[..n].windows(4).any(|w| w == b"\r\n\r\n"))
}

impl Entry {
    /// Whether it may be closed to make room: idle, closable, and with no
    /// request head waiting to be read.
    fn closable(&self) -> bool {
        self.busy == 0 && self.socket.as_ref().is_some_and(|socket| !head_waiting(socket))
    }
}

/// Where a new connection finds room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Under both caps.
    Free,
    /// Once the connection at this index is closed.
    Close(usize),
    /// Nowhere: every connection it could replace is inside a request.
    Full,
}

/// The oldest closable connection among `entries` that `which` selects.
fn oldest(entries: &[Entry], which: impl Fn(&Entry) -> bool) -> Option<usize> {
    entries.iter().enumerate().filter(|(_, e)| e.closable() && which(e)).min_by_key(|(_, e)| e.since).map(|(i, _)| i)
}

/// Where a new connection from `peer` finds room among `entries`.
fn room(entries: &[Entry], peer: IpAddr, limits: &Limits) -> Room {
    let found = |index: Option<usize>| index.map_or(Room::Full, Room::Close);
    if entries.iter().filter(|e| e.peer == peer).count() >= limits.per_peer {
        return found(oldest(entries, |e| e.peer == peer));
    }
    if entries.len() < limits.total {
        return Room::Free;
    }
    // The address holding the most connections gives one up (the first
    // such in order, on a tie), else anyone.
    let heaviest = entries
        .iter()
        .map(|e| (entries.iter().filter(|other| other.peer == e.peer).count(), e.peer))
        .fold(None, |best: Option<(usize, IpAddr)>, (count, peer)| match best {
            Some((most, _)) if most >= count => best,
            _ => Some((count, peer)),
        })
        .map(|(_, peer)| peer);
    found(oldest(entries, |e| Some(e.peer) == heaviest).or_else(|| oldest(entries, |_| true)))
}

/// Shuts `entry`'s connection down (its task then ends) and logs it,
/// rate-limited.
fn close(entry: Entry, why: &str, throttle: &Throttle, now: Instant) {
    if let Some(socket) = entry.socket {
        // Already gone if this fails: nothing more to do.
        let _ = socket.shutdown(Shutdown::Both);
    }
    let peer = entry.peer;
    if throttle.allow(Kind::Shed, now, || format!("{peer}: {why}")) {
        tracing::warn!(kind = %Kind::Shed.name(), %peer, reason = why, "admin connection closed");
    }
}

/// The held connections, shared by the endpoint's threads.
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    throttle: Arc<Throttle>,
    entries: Mutex<(u64, Vec<Entry>)>,
}

/// A held connection, kept in its extensions: dropped with it, it leaves
/// the registry.
#[derive(Debug)]
pub struct Held {
    id: u64,
    connections: Arc<Connections>,
}

/// A request in progress on a held connection: while it lives, the
/// connection is not idle.
#[derive(Debug)]
pub struct Busy {
    id: u64,
    connections: Arc<Connections>,
}

impl Connections {
    /// No connection yet, under `limits`; closings counted by `throttle`.
    pub fn new(limits: Limits, throttle: Arc<Throttle>) -> Arc<Self> {
        Arc::new(Self { limits, throttle, entries: Mutex::new((0, Vec::new())) })
    }

    /// Calls `change` on the entry `id`, if it is still held.
    fn update(&self, id: u64, change: impl FnOnce(&mut Entry)) {
        let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = guard.1.iter_mut().find(|e| e.id == id) {
            change(entry);
        }
    }

    /// Takes in a connection from `peer` at `now`, closing an idle one if
    /// that makes room; `None` (and `socket` shut down) when there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, socket: Option<TcpStream>, now: Instant) -> Option<Held> {
        // Peeking at a socket must never wait (the runtime's sockets do not
        // already; a socket that cannot be made so is not kept).
        let socket = socket.filter(|socket| socket.set_nonblocking(true).is_ok());
        let (admitted, closed) = {
            let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let (next_id, entries) = &mut *guard;
            let mut closed = Vec::new();
            let admitted = loop {
                match room(entries, peer, &self.limits) {
                    Room::Free => {
                        *next_id += 1;
                        entries.push(Entry { id: *next_id, peer, since: now, busy: 0, served: false, socket });
                        break Some(*next_id);
                    }
                    Room::Close(index) => closed.push(entries.swap_remove(index)),
                    Room::Full => {
                        closed.push(Entry { id: 0, peer, since: now, busy: 0, served: false, socket });
                        break None;
                    }
                }
            };
            (admitted, closed)
        };
        for entry in closed {
            let why = if entry.id == 0 {
                "no room: every connection is inside a request"
            } else {
                "idle, closed to make room for a new connection"
            };
            close(entry, why, &self.throttle, now);
        }
        admitted.map(|id| Held { id, connections: Arc::clone(self) })
    }

    /// Closes the connections idle past their deadline at `now`.
    pub fn reap(&self, now: Instant) {
        let overdue: Vec<Entry> = {
            let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let limits = self.limits;
            let late = |e: &Entry| {
                let deadline = if e.served { limits.between_requests } else { limits.first_request };
                e.closable() && now.saturating_duration_since(e.since) > deadline
            };
            let (overdue, kept) = std::mem::take(&mut guard.1).into_iter().partition(late);
            guard.1 = kept;
            overdue
        };
        for entry in overdue {
            close(entry, "idle past its deadline", &self.throttle, now);
        }
    }

    /// How many connections are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).1.len()
    }

    /// actix-web's `on_connect`: registers the new connection `io` (a TCP
    /// stream), or closes it when there is no room.
    pub fn on_connect(self: &Arc<Self>, io: &dyn Any, extensions: &mut Extensions) {
        let Some(stream) = io.downcast_ref::<actix_web::rt::net::TcpStream>() else { return };
        let peer = stream.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let socket = stream.as_fd().try_clone_to_owned().ok().map(TcpStream::from);
        if let Some(held) = self.admit(peer, socket, Instant::now()) {
            extensions.insert(held);
        }
    }
}

impl Held {
    /// Marks a request in progress, until the returned guard drops.
    pub fn busy(&self) -> Busy {
        self.connections.update(self.id, |entry| entry.busy += 1);
        Busy { id: self.id, connections: Arc::clone(&self.connections) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut guard = self.connections.entries.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.retain(|e| e.id != self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.connections.update(self.id, |entry| {
            entry.busy = entry.busy.saturating_sub(1);
            entry.since = Instant::now();
            entry.served = true;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    const LIMITS: Limits = Limits {
        total: 4,
        per_peer: 3,
        first_request: Duration::from_secs(2),
        between_requests: Duration::from_secs(7),
    };

    /// A connected pair on loopback: the server's side (to hold) and the
    /// client's (to see it closed).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (server, client)
    }

    /// Whether the server closed the connection of `client`.
    fn closed(client: &TcpStream) -> bool {
        client.set_nonblocking(true).expect("non-blocking");
        let mut byte = [0u8; 1];
        !matches!((&*client).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn one_address_closes_its_own_oldest_idle_connections() {
        let connections = Connections::new(LIMITS, Arc::default());
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let (server, other_client) = pair();
        let _other = connections.admit(ip(2), Some(server), at(0)).expect("room");
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for s in 1..=5 {
            let (server, client) = pair();
            held.push(connections.admit(ip(1), Some(server), at(s)).expect("room"));
            clients.push(client);
        }
        // 3 from 10.0.0.1 at most: its two oldest were closed, not 10.0.0.2's.
        let states: Vec<bool> = clients.iter().map(closed).collect();
        assert_eq!(states, [true, true, false, false, false]);
        assert!(!closed(&other_client));
        assert_eq!(connections.held(), 4);
        // Dropping a connection's handle (its end) forgets it.
        drop(held.pop());
        assert_eq!(connections.held(), 3);
    }

    #[test]
    fn connections_inside_a_request_are_never_closed_to_make_room() {
        let connections = Connections::new(LIMITS, Arc::default());
        let now = Instant::now();
        let mut clients = Vec::new();
        let mut busy = Vec::new();
        let mut held = Vec::new();
        for last in 1..=4 {
            let (server, client) = pair();
            let connection = connections.admit(ip(last), Some(server), now).expect("room");
            busy.push(connection.busy());
            held.push(connection);
            clients.push(client);
        }
        // All four busy: a fifth is turned away, and closed.
        let (server, client) = pair();
        assert!(connections.admit(ip(5), Some(server), now).is_none());
        assert!(closed(&client));
        assert!(clients.iter().all(|c| !closed(c)));
        // One request ends: its connection is idle again, and may go.
        drop(busy.remove(0));
        let (server, _client) = pair();
        assert!(connections.admit(ip(5), Some(server), now).is_some());
        assert!(closed(&clients[0]));
        assert!(clients[1..].iter().all(|c| !closed(c)));
    }

    #[test]
    fn a_request_waiting_to_be_read_is_not_closed_to_make_room() {
        use std::io::Write as _;
        let connections = Connections::new(LIMITS, Arc::default());
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let (server, mut probe) = pair();
        let _probe = connections.admit(ip(1), Some(server), at(0)).expect("room");
        probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("sent");
        let (server, slow) = pair();
        let _slow = connections.admit(ip(1), Some(server), at(1)).expect("room");
        (&slow).write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: a").expect("sent");
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for s in 2..=4 {
            let (server, client) = pair();
            held.push(connections.admit(ip(1), Some(server), at(s)).expect("room"));
            clients.push(client);
        }
        // Over the cap of 3, twice: the slow head goes, then the oldest idle
        // one; the whole head waiting to be read stays.
        assert!(closed(&slow) && closed(&clients[0]));
        assert!(!closed(&probe) && !closed(&clients[1]) && !closed(&clients[2]));
    }

    #[test]
    fn the_total_cap_takes_from_the_address_that_holds_the_most() {
        let entry = |id, last, since| Entry {
            id,
            peer: ip(last),
            since: Instant::now() + Duration::from_secs(since),
            busy: 0,
            served: false,
            socket: Some(pair().0),
        };
        // 10.0.0.1 holds the oldest, 10.0.0.2 the most.
        let entries = [entry(1, 1, 0), entry(2, 2, 1), entry(3, 2, 2), entry(4, 3, 3)];
        assert_eq!(room(&entries, ip(9), &LIMITS), Room::Close(1));
        assert_eq!(room(&entries[..3], ip(9), &LIMITS), Room::Free);
        // Over its own cap, an address replaces its own.
        let limits = Limits { per_peer: 2, ..LIMITS };
        assert_eq!(room(&entries[..3], ip(2), &limits), Room::Close(1));
        // A connection that cannot be shut down is not a candidate.
        let mut stuck = entries;
        stuck[1].socket = None;
        assert_eq!(room(&stuck, ip(9), &LIMITS), Room::Close(2));
    }

    #[test]
    fn idle_connections_are_closed_past_their_deadline() {
        let connections = Connections::new(LIMITS, Arc::default());
        let start = Instant::now();
        let (fresh_server, fresh) = pair();
        let (served_server, served) = pair();
        let (busy_server, busy_client) = pair();
        let _fresh = connections.admit(ip(1), Some(fresh_server), start).expect("room");
        let served_held = connections.admit(ip(2), Some(served_server), start).expect("room");
        drop(served_held.busy());
        let busy_held = connections.admit(ip(3), Some(busy_server), start).expect("room");
        let _busy = busy_held.busy();
        connections.reap(start + Duration::from_secs(2));
        assert!(!closed(&fresh), "not past its 2 s yet");
        connections.reap(start + Duration::from_secs(3));
        assert!(closed(&fresh), "no request within 2 s");
        assert!(!closed(&served), "7 s after a request");
        connections.reap(Instant::now() + Duration::from_secs(8));
        assert!(closed(&served));
        assert!(!closed(&busy_client), "inside a request: never");
        assert_eq!(connections.held(), 1);
    }
}
