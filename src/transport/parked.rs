//! Plain TCP connections whose client does not keep its socket full, waiting on one epoll set
//! per core instead of holding an io_uring readiness poll each.
//!
//! glommio keeps a readiness poll armed for every socket it wraps, and each poll is an I/O
//! source of about 500 bytes: a third of what an idle connection cost (issue 3's goal is
//! 1,000 bytes per idle connection). So a plain TCP connection starts parked: right after
//! the accept, its socket leaves glommio for its core's [`ParkingLot`], where it is
//! registered, edge-triggered, in the lot's epoll set; that costs the kernel's entry and a
//! `Slot` of one waker here. The lot waits for the whole set with one glommio poll. A
//! source freed right after its accept is reused by the next one, so the memory never
//! accumulates; one freed later, when a connection goes quiet, leaves a hole in the heap
//! that later allocations fill.
//!
//! A [`ParkedTcp`] is a complete byte stream: reads and writes are non-blocking system calls
//! (what glommio does first too) and only their waits go through the lot. A connection whose
//! client keeps its socket full (see `ConnHandle::is_busy`) goes back to glommio
//! ([`ParkedTcp::unpark`]; if that fails for want of a descriptor, it simply stays parked),
//! and one quiet for `park_after_idle_ms` is parked again (see `Shard::tick`).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::net::TcpStream;
use smallvec::SmallVec;

/// Slots the lot's table grows by when it is full.
const SLOTS_PER_GROWTH: usize = 1024;

/// Events taken from the epoll set per system call.
const EVENTS_PER_WAIT: usize = 64;

/// Wake-ups in a row that found no event after which the lot pauses before waiting again
/// (see [`ParkingLot::run`]).
const EMPTY_WAKES_BEFORE_PAUSE: u32 = 3;

/// How long the lot pauses then.
const EMPTY_WAKE_PAUSE: Duration = Duration::from_millis(10);

/// Readiness that wakes a parked socket's task: data, urgent data, room, the peer's close, an
/// error.
const EVENTS: u32 = (libc::EPOLLIN
    | libc::EPOLLPRI
    | libc::EPOLLRDHUP
    | libc::EPOLLOUT
    | libc::EPOLLHUP
    | libc::EPOLLERR) as u32;

/// A parked socket may have something to read (see `Slots::ready`).
const READABLE: u8 = 1;
/// A short read may not have taken all there was: the peer closed its side, the socket failed
/// (a read stops at the end of the stream), or urgent data came (a read stops at its mark).
const HUNG_UP: u8 = 2;

/// What the epoll events `events` say a socket is ready for.
fn readiness(events: u32) -> u8 {
    let has = |bits: libc::c_int| events & bits as u32 != 0;
    let mut ready = 0;
    if has(libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) {
        ready |= READABLE;
    }
    if has(libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) {
        ready |= HUNG_UP;
    }
    ready
}

/// One core's epoll set of parked sockets, and the wakers of the tasks waiting on them.
///
/// Owned by its core (`Rc`, never sent): the set is only touched from the core's thread.
pub struct ParkingLot {
    epoll: OwnedFd,
    slots: RefCell<Slots>,
    /// Times the lot's task woke up (each wait for the set that completed).
    wakes: Cell<u64>,
}

/// The lot's table of waiters, indexed by the number each socket is registered with.
#[derive(Default)]
struct Slots {
    entries: Vec<Slot>,
    /// Beside each entry, whether its socket may have something to read (`READABLE`, and
    /// `HUNG_UP` once its close is seen): set when the set reports it, cleared when a read
    /// finds that it would block or takes all there was. A task woken to write, or for work of
    /// its own, then makes no read that would find nothing (writes are always tried: a full
    /// socket is rare). One byte per socket, kept beside the slots rather than in them, where
    /// it would take eight.
    ready: Vec<u8>,
    /// Entries no socket uses, reused before the table grows.
    free: Vec<u32>,
    /// Sockets registered.
    parked: usize,
}

/// The task waiting on one parked socket, to read, to write or both, woken by any readiness
/// of the socket. One task serves a connection, both its reads and its writes (the handshake's
/// task, then the connection's): a slot of one waker (16 bytes, where one per direction took
/// 32) is all it needs, and the rare wake-up for the other direction only has the task poll
/// again. A waker that takes the slot replaces the one before without waking it: two tasks
/// waiting on one parked socket at once would need a slot each.
#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
}

impl ParkingLot {
    /// An empty lot, with its epoll set.
    pub fn new() -> io::Result<Rc<Self>> {
        // SAFETY: a plain system call with a flag argument.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rc::new(ParkingLot {
            // SAFETY: `fd` was just created and nothing else owns it.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Slots::default()),
            wakes: Cell::new(0),
        }))
    }

    /// How many sockets are parked here now.
    pub fn parked(&self) -> usize {
        self.slots.borrow().parked
    }

    /// Adds `socket` to the set; returns the number its events carry.
    fn register(&self, socket: BorrowedFd<'_>) -> io::Result<u32> {
        let mut slots = self.slots.borrow_mut();
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(slots.entries.len())
                    .map_err(|_| io::Error::other("too many parked sockets"))?;
                if slots.entries.len() == slots.entries.capacity() {
                    // Grown by a fixed step rather than doubled: the table is as long as the
                    // most sockets ever parked at once, and a doubled one would keep up to
                    // twice that.
                    slots.entries.reserve_exact(SLOTS_PER_GROWTH);
                    slots.ready.reserve_exact(SLOTS_PER_GROWTH);
                }
                slots.entries.push(Slot::default());
                slots.ready.push(0);
                index
            }
        };
        // Until the set says otherwise, the socket may hold data (a client's first bytes).
        if let Some(ready) = slots.ready.get_mut(index as usize) {
            *ready = READABLE;
        }
        let mut event = libc::epoll_event {
            events: EVENTS | libc::EPOLLET as u32,
            u64: u64::from(index),
        };
        // SAFETY: both descriptors are open for this whole call; `event` is a valid pointer.
        let added = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                &mut event,
            )
        };
        if added < 0 {
            slots.free.push(index);
            return Err(io::Error::last_os_error());
        }
        slots.parked += 1;
        Ok(index)
    }

    /// Removes `socket` (registered as `index`) from the set. It must be removed before its
    /// descriptor is closed: epoll keeps a socket that another descriptor still refers to.
    fn deregister(&self, socket: BorrowedFd<'_>, index: u32) {
        // SAFETY: both descriptors are open for this whole call; the event pointer may be
        // null for a removal.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                socket.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.entries.get_mut(index as usize) {
            *slot = Slot::default();
            slots.free.push(index);
            slots.parked -= 1;
        }
    }

    /// Has the task of `waker` woken when socket `index` is next ready (see `Slot`).
    fn wait(&self, index: u32, waker: &Waker) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.entries.get_mut(index as usize) else {
            drop(slots);
            // Every registered index has an entry: wake at once rather than never.
            waker.wake_by_ref();
            return;
        };
        match &slot.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
    }

    /// Whether socket `index` may have something to read: a read is worth its system call.
    fn may_be_readable(&self, index: u32) -> bool {
        self.slots
            .borrow()
            .ready
            .get(index as usize)
            .map_or(true, |ready| ready & READABLE != 0)
    }

    /// Records that socket `index` has nothing to read until the set reports it again;
    /// `drained` says a read took all there was (a short read), which counts only while the
    /// peer has not closed: its close, once seen, is not reported again, and the next read
    /// must find it.
    fn nothing_to_read(&self, index: u32, drained: bool) {
        let mut slots = self.slots.borrow_mut();
        if let Some(ready) = slots.ready.get_mut(index as usize) {
            if !drained || *ready & HUNG_UP == 0 {
                *ready &= !READABLE;
            }
        }
    }

    /// Wakes the tasks waiting on the sockets of `events`.
    fn dispatch(&self, events: &[libc::epoll_event]) {
        // One per event at most; a batch of events seldom wakes more than a few tasks, and a
        // busy parked writer wakes the lot often, so those few stay off the heap.
        let mut woken: SmallVec<[Waker; 8]> = SmallVec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for event in events {
                let Ok(index) = usize::try_from(event.u64) else {
                    continue;
                };
                if let Some(ready) = slots.ready.get_mut(index) {
                    *ready |= readiness(event.events);
                }
                // Any readiness wakes the task (see `Slot`).
                if let Some(slot) = slots.entries.get_mut(index) {
                    woken.extend(slot.waker.take());
                }
            }
        }
        // Woken outside the borrow: a waker may run code that parks or unparks a socket.
        for waker in woken {
            waker.wake();
        }
    }

    /// Takes what is ready in the set without waiting; returns how many events it found.
    fn collect(&self) -> io::Result<usize> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        // SAFETY: `events` is writable for the count passed; a 0 timeout never blocks.
        let found = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS_PER_WAIT as libc::c_int,
                0,
            )
        };
        let Ok(found) = usize::try_from(found) else {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(error),
            };
        };
        self.dispatch(&events[..found]);
        Ok(found)
    }

    /// Waits until the epoll set has something ready, through `duplicate`, a descriptor of
    /// the set; returns the descriptor for the next wait, made before this one is closed.
    ///
    /// glommio has no readiness wait for a descriptor of our own, but every socket it wraps
    /// arms a readiness poll at once (glommio 0.9.0, pinned in `Cargo.toml` for this), and
    /// its read does not try the descriptor while that poll is pending. So a duplicate of the
    /// set's descriptor is wrapped as a socket: the armed poll completes when the set is
    /// ready, and the read that follows fails (an epoll set is not a socket), which is the
    /// sign. The wrapper is dropped after each wait, closing its duplicate, and the next one
    /// is made first: the lot never gives its place in the descriptor table away, which at the
    /// open-files limit another accept could take.
    async fn ready(&self, duplicate: OwnedFd) -> (io::Result<()>, io::Result<OwnedFd>) {
        // SAFETY: the descriptor is owned by `duplicate` and handed over whole; it is an epoll
        // set, not a socket, which glommio only ever polls and tries to read (see above).
        let mut waiter = unsafe { TcpStream::from_raw_fd(duplicate.into_raw_fd()) };
        let mut byte = [0u8; 1];
        let waited = match waiter.read(&mut byte).await {
            Err(error) if error.raw_os_error() == Some(libc::ENOTSOCK) => Ok(()),
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        let next = self.epoll.try_clone();
        drop(waiter);
        (waited, next)
    }

    /// The lot's task: wakes the tasks of parked sockets as the set reports them ready.
    /// Runs until its core's executor ends.
    ///
    /// Should the wait ever complete without the set being ready (it never has, but it rests
    /// on how glommio arms its polls), the lot pauses after a few such wake-ups in a row
    /// rather than spin, so parked clients are then heard a little late, never not at all.
    /// So does a wait that fails (no descriptor for it), logged once per run of failures.
    pub async fn run(self: Rc<Self>) {
        let mut empty_wakes = 0u32;
        let mut failing = false;
        let mut next = self.epoll.try_clone();
        loop {
            let waited = match next {
                Ok(duplicate) => {
                    let (waited, after) = self.ready(duplicate).await;
                    next = after;
                    waited
                }
                Err(error) => {
                    next = self.epoll.try_clone();
                    Err(error)
                }
            };
            match waited {
                Ok(()) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "parked connections: cannot wait for the epoll set; polling it every 10 ms meanwhile");
                    }
                    failing = true;
                    glommio::timer::sleep(EMPTY_WAKE_PAUSE).await;
                }
            }
            self.wakes.set(self.wakes.get() + 1);
            // A full batch may have left more behind: take until the set is drained.
            let mut found = EVENTS_PER_WAIT;
            let mut total = 0;
            while found == EVENTS_PER_WAIT {
                found = match self.collect() {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%error, "parked connections: cannot read the epoll set");
                        0
                    }
                };
                total += found;
            }
            if total == 0 {
                empty_wakes += 1;
                if empty_wakes >= EMPTY_WAKES_BEFORE_PAUSE {
                    glommio::timer::sleep(EMPTY_WAKE_PAUSE).await;
                }
            } else {
                empty_wakes = 0;
            }
        }
    }
}

/// A plain TCP connection parked in its core's [`ParkingLot`].
pub struct ParkedTcp {
    socket: OwnedFd,
    index: u32,
    lot: Rc<ParkingLot>,
}

impl ParkedTcp {
    /// Parks the socket of `stream` in `lot`. The caller drops `stream` after, which closes
    /// glommio's descriptor and cancels its poll; the socket lives on in a duplicate.
    pub fn park(stream: &TcpStream, lot: &Rc<ParkingLot>) -> io::Result<Self> {
        // SAFETY: the descriptor belongs to `stream`, alive for this whole call; it is only
        // duplicated, not taken.
        let socket = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()?;
        let index = lot.register(socket.as_fd())?;
        Ok(ParkedTcp {
            socket,
            index,
            lot: lot.clone(),
        })
    }

    /// The socket as a glommio stream again, with its own descriptor. The caller drops
    /// `self` after, which takes the socket out of the lot.
    pub fn unpark(&self) -> io::Result<TcpStream> {
        let socket = self.socket.try_clone()?;
        // SAFETY: the descriptor was just duplicated and is owned by nothing else.
        Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.socket)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("a parked socket that is not an IP socket"))
    }
}

/// Receives into `buf` from `socket` without waiting: `None` when nothing is there yet. Also
/// how a connection reads a new client's first bytes before any wait (`ReadHalf::read_now`).
pub fn recv_now(socket: BorrowedFd<'_>, buf: &mut [u8]) -> Option<io::Result<usize>> {
    // SAFETY: the descriptor is borrowed, so open, for this whole call; `buf` is writable for
    // its length.
    nonblocking(|| unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    })
}

/// Sends `buf` on `socket` without waiting: `None` when the socket has no room yet.
fn send_now(socket: BorrowedFd<'_>, buf: &[u8]) -> Option<io::Result<usize>> {
    // SAFETY: the descriptor is borrowed, so open, for this whole call; `buf` is readable for
    // its length.
    nonblocking(|| unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// The result of a non-blocking system call, made again when a signal interrupted it: `None`
/// when it would block.
fn nonblocking(mut call: impl FnMut() -> isize) -> Option<io::Result<usize>> {
    loop {
        if let Ok(count) = usize::try_from(call()) {
            return Some(Ok(count));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return None,
            _ => return Some(Err(error)),
        }
    }
}

impl AsFd for ParkedTcp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for ParkedTcp {
    fn drop(&mut self) {
        self.lot.deregister(self.socket.as_fd(), self.index);
    }
}

impl AsyncRead for ParkedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.lot.may_be_readable(self.index) {
            self.lot.wait(self.index, cx.waker());
            return Poll::Pending;
        }
        match recv_now(self.socket.as_fd(), buf) {
            Some(Ok(read)) => {
                // A short read took all there was: TCP hands over what it holds, up to the
                // room given. What arrives next is a new edge.
                if read > 0 && read < buf.len() {
                    self.lot.nothing_to_read(self.index, true);
                }
                Poll::Ready(Ok(read))
            }
            Some(Err(error)) => Poll::Ready(Err(error)),
            None => {
                // Edge-triggered: data that arrives from now on is a new edge, which the lot
                // reports at its next collection, after this registration.
                self.lot.nothing_to_read(self.index, false);
                self.lot.wait(self.index, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for ParkedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Always tried: a full socket is rare, and room freed since it was found full is
        // taken at once rather than after the lot reports it.
        match send_now(self.socket.as_fd(), buf) {
            Some(done) => Poll::Ready(done),
            None => {
                self.lot.wait(self.index, cx.waker());
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // As glommio closes a TCP stream: the sending side only.
        // SAFETY: the descriptor is open while `self` is.
        let shut = unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_WR) };
        if shut < 0 {
            return Poll::Ready(Err(io::Error::last_os_error()));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::TcpListener;
    use glommio::timer::sleep;

    use super::*;
    use crate::transport::testing::{run, within};

    /// Bytes a parked writer sends in the test of a full socket: far more than the shrunk
    /// socket buffers hold.
    const MANY: usize = 1 << 20;

    /// A connected pair of loopback sockets: the accepted end, then the connecting one.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let server = listener.accept().await.expect("accept");
        (server, client)
    }

    /// A lot with its task running, and the accepted end of a new pair parked in it.
    async fn parked_pair() -> (Rc<ParkingLot>, ParkedTcp, TcpStream) {
        let lot = ParkingLot::new().expect("epoll set");
        glommio::spawn_local(lot.clone().run()).detach();
        let (server, client) = pair().await;
        let parked = ParkedTcp::park(&server, &lot).expect("park");
        drop(server);
        (lot, parked, client)
    }

    #[test]
    fn a_parked_read_waits_for_what_the_peer_sends_later() {
        run(|| async {
            let (lot, mut parked, mut client) = parked_pair().await;
            assert_eq!(lot.parked(), 1);
            let writer = glommio::spawn_local(async move {
                sleep(Duration::from_millis(50)).await;
                client.write_all(b"hello").await.expect("write");
                client
            });
            let mut buf = [0u8; 16];
            let read = within(parked.read(&mut buf)).await.expect("read");
            assert_eq!(&buf[..read], b"hello");
            let mut client = writer.await;
            // Both ways, the parked end writing.
            parked.write_all(b"back").await.expect("write back");
            let read = within(client.read(&mut buf)).await.expect("read back");
            assert_eq!(&buf[..read], b"back");
        });
    }

    #[test]
    fn a_parked_writer_waits_for_room_and_loses_nothing() {
        run(|| async {
            let (lot, mut parked, mut client) = parked_pair().await;
            // A small send buffer, so that the socket is full long before `MANY` (the
            // client's receive window, before it reads, is far smaller than that too).
            socket2::SockRef::from(&parked)
                .set_send_buffer_size(4096)
                .expect("send buffer");
            let sent: Vec<u8> = (0..MANY).map(|i| (i % 251) as u8).collect();
            let expected = sent.clone();
            let done = Rc::new(Cell::new(false));
            let finished = done.clone();
            let writer = glommio::spawn_local(async move {
                parked.write_all(&sent).await.expect("write");
                finished.set(true);
            });
            // Nobody reads yet: the parked writer found the socket full and waits in the lot.
            sleep(Duration::from_millis(100)).await;
            assert!(!done.get(), "a full socket took all {MANY} bytes");
            let wakes = lot.wakes.get();
            let mut received = Vec::with_capacity(MANY);
            let mut chunk = vec![0u8; 64 * 1024];
            while received.len() < MANY {
                let read = within(client.read(&mut chunk)).await.expect("read");
                assert_ne!(read, 0, "closed early");
                received.extend_from_slice(&chunk[..read]);
            }
            within(writer).await;
            assert!(received == expected, "the bytes differ");
            assert!(
                lot.wakes.get() > wakes,
                "the writer went on without the lot"
            );
        });
    }

    #[test]
    fn a_parked_read_sees_the_peer_close() {
        run(|| async {
            let (_lot, mut parked, client) = parked_pair().await;
            let closer = glommio::spawn_local(async move {
                sleep(Duration::from_millis(50)).await;
                drop(client);
            });
            let mut buf = [0u8; 16];
            assert_eq!(within(parked.read(&mut buf)).await.expect("read"), 0);
            closer.await;
        });
    }

    #[test]
    fn a_short_read_skips_the_next_call_until_more_comes() {
        run(|| async {
            let (lot, mut parked, mut client) = parked_pair().await;
            client.write_all(b"one").await.expect("write");
            let mut buf = [0u8; 16];
            let read = within(parked.read(&mut buf)).await.expect("read");
            assert_eq!(&buf[..read], b"one");
            assert!(
                !lot.may_be_readable(parked.index),
                "a short read took all there was"
            );
            // What comes next is a new edge: the lot reports it and the read gets it.
            let writer = glommio::spawn_local(async move {
                sleep(Duration::from_millis(20)).await;
                client.write_all(b"two").await.expect("write");
                client
            });
            let read = within(parked.read(&mut buf)).await.expect("read");
            assert_eq!(&buf[..read], b"two");
            drop(writer.await);
        });
    }

    #[test]
    fn data_and_close_together_are_both_read() {
        run(|| async {
            let (lot, mut parked, mut client) = parked_pair().await;
            client.write_all(b"last words").await.expect("write");
            drop(client);
            // The lot sees data and the close in one event before the read.
            sleep(Duration::from_millis(50)).await;
            let mut buf = [0u8; 64];
            let read = within(parked.read(&mut buf)).await.expect("read");
            assert_eq!(&buf[..read], b"last words");
            assert!(
                lot.may_be_readable(parked.index),
                "the close is still to read"
            );
            assert_eq!(within(parked.read(&mut buf)).await.expect("read"), 0);
        });
    }

    #[test]
    fn urgent_data_does_not_hide_what_follows_it() {
        run(|| async {
            let (_lot, mut parked, mut client) = parked_pair().await;
            client.write_all(b"AAAA").await.expect("write");
            // SAFETY: the descriptor is open while `client` is; the buffer is one byte.
            let sent =
                unsafe { libc::send(client.as_raw_fd(), b"B".as_ptr().cast(), 1, libc::MSG_OOB) };
            assert_eq!(sent, 1);
            client.write_all(b"CCCC").await.expect("write");
            sleep(Duration::from_millis(50)).await;
            // A read stops at the urgent mark, short of the buffer: what follows must still
            // be read, though no new event will say so.
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.ends_with(b"CCCC") {
                let read = within(parked.read(&mut buf)).await.expect("read");
                assert_ne!(read, 0, "closed early");
                got.extend_from_slice(&buf[..read]);
            }
            assert!(got.starts_with(b"AAAA"), "{got:?}");
            drop(client);
        });
    }

    #[test]
    fn unparking_gives_the_socket_back_and_leaves_the_lot() {
        run(|| async {
            let (lot, parked, mut client) = parked_pair().await;
            let fd = parked.as_fd().as_raw_fd();
            let mut stream = parked.unpark().expect("unpark");
            assert_ne!(stream.as_raw_fd(), fd, "a descriptor of its own");
            drop(parked);
            assert_eq!(lot.parked(), 0);
            client.write_all(b"after").await.expect("write");
            let mut buf = [0u8; 16];
            let read = within(stream.read(&mut buf)).await.expect("read");
            assert_eq!(&buf[..read], b"after");
        });
    }

    #[test]
    fn a_quiet_lot_sleeps() {
        run(|| async {
            let (lot, mut parked, mut client) = parked_pair().await;
            // The registration reports the socket writable (one wake-up at most); after that
            // nothing is ready, and the lot's task waits rather than spins.
            sleep(Duration::from_millis(50)).await;
            let registered = lot.wakes.get();
            assert!(
                registered <= 1,
                "{registered} wake-ups for one registration"
            );
            sleep(Duration::from_millis(200)).await;
            assert_eq!(lot.wakes.get(), registered, "woke with nothing ready");
            // A read that waits is woken through the lot.
            let reader = glommio::spawn_local(async move {
                let mut buf = [0u8; 1];
                within(parked.read(&mut buf)).await.expect("read");
            });
            sleep(Duration::from_millis(20)).await;
            client.write_all(b"x").await.expect("write");
            within(reader).await;
            assert!(
                lot.wakes.get() > registered,
                "the data came without a wake-up"
            );
        });
    }

    #[test]
    fn slots_are_reused() {
        run(|| async {
            let lot = ParkingLot::new().expect("epoll set");
            let (server, _client) = pair().await;
            for _ in 0..3 {
                let parked = ParkedTcp::park(&server, &lot).expect("park");
                assert_eq!(parked.index, 0);
                drop(parked);
            }
            assert_eq!(lot.parked(), 0);
            assert_eq!(lot.slots.borrow().entries.len(), 1);
        });
    }

    #[test]
    fn a_slot_is_one_waker() {
        // The lot keeps a slot per parked socket, and a few spare (issue 3's idle memory).
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    /// A waker that counts its wake-ups.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn the_last_waker_is_woken_by_any_readiness() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        run(|| async {
            let lot = ParkingLot::new().expect("epoll set");
            let (server, _client) = pair().await;
            let parked = ParkedTcp::park(&server, &lot).expect("park");
            let first = Arc::new(Counted(AtomicUsize::new(0)));
            let second = Arc::new(Counted(AtomicUsize::new(0)));
            lot.wait(parked.index, &Waker::from(first.clone()));
            lot.wait(parked.index, &Waker::from(second.clone()));
            for events in [libc::EPOLLIN, libc::EPOLLOUT] {
                let ready = libc::epoll_event {
                    events: events as u32,
                    u64: u64::from(parked.index),
                };
                lot.wait(parked.index, &Waker::from(second.clone()));
                lot.dispatch(&[ready]);
            }
            assert_eq!(first.0.load(Ordering::Relaxed), 0, "replaced, not woken");
            assert_eq!(
                second.0.load(Ordering::Relaxed),
                2,
                "woken for data, then for room"
            );
        });
    }
}
