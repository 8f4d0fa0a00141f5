//! `max_connections_per_ip` and `max_connect_rate_per_ip`: how many connections one address
//! may hold on a listener, and how fast it may open them, counted across every core.
//!
//! The count is shared by the cores behind a lock, taken once when a connection is accepted and
//! once when it ends, and only on listeners that set a limit (both are off by default): the
//! publish path never touches it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// The window `max_connect_rate_per_ip` counts connections in.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Why a connection exceeds a per-address limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerIpRefusal {
    /// The address already holds `max_connections_per_ip` connections.
    TooManyConnections,
    /// The address opened `max_connect_rate_per_ip` connections in the last second.
    RateExceeded,
}

/// What one address holds and opened recently.
#[derive(Debug, Default)]
struct AddressUse {
    open: usize,
    window_start: Option<Instant>,
    opened_in_window: usize,
}

impl AddressUse {
    fn is_idle(&self, now: Instant) -> bool {
        self.open == 0
            && self
                .window_start
                .map_or(true, |start| now.duration_since(start) >= RATE_WINDOW)
    }
}

/// The per-address counts of one listener, shared by every core.
#[derive(Debug)]
pub struct PerIpLimits {
    max_connections: usize,
    max_rate: usize,
    by_address: Mutex<AHashMap<IpAddr, AddressUse>>,
}

impl PerIpLimits {
    /// Limits of `max_connections` open connections (0 = no cap) and `max_rate` new ones per
    /// second (0 = no limit) per address; `None` when both are off.
    pub fn new(max_connections: usize, max_rate: usize) -> Option<Arc<Self>> {
        (max_connections != 0 || max_rate != 0).then(|| {
            Arc::new(Self {
                max_connections,
                max_rate,
                by_address: Mutex::new(AHashMap::new()),
            })
        })
    }

    /// Counts a new connection from `ip`. The connection holds the returned guard for its
    /// whole life, refused or not (a refused one is answered, then closed); the refusal says
    /// which limit it exceeds.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> (PerIpGuard, Option<PerIpRefusal>) {
        let mut table = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.len() >= 1024 && table.len().is_power_of_two() {
            // Forget addresses with nothing open and no recent connection, so that the table
            // holds at most the addresses connected now or in the last second.
            table.retain(|_, use_| !use_.is_idle(now));
        }
        let entry = table.entry(ip).or_default();
        let window_over = entry
            .window_start
            .map_or(true, |start| now.duration_since(start) >= RATE_WINDOW);
        if window_over {
            entry.window_start = Some(now);
            entry.opened_in_window = 0;
        }
        entry.opened_in_window += 1;
        let refusal = if self.max_rate != 0 && entry.opened_in_window > self.max_rate {
            Some(PerIpRefusal::RateExceeded)
        } else if self.max_connections != 0 && entry.open >= self.max_connections {
            Some(PerIpRefusal::TooManyConnections)
        } else {
            None
        };
        entry.open += 1;
        let guard = PerIpGuard {
            limits: self.clone(),
            ip,
        };
        (guard, refusal)
    }

    fn release(&self, ip: IpAddr) {
        let mut table = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
        }
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn tracked_addresses(&self) -> usize {
        self.by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection's place in its address's count; given back when dropped.
#[derive(Debug)]
pub struct PerIpGuard {
    limits: Arc<PerIpLimits>,
    ip: IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn both_limits_off_means_no_table() {
        assert!(PerIpLimits::new(0, 0).is_none());
    }

    #[test]
    fn the_connection_cap_counts_open_connections_per_address() {
        let limits = PerIpLimits::new(2, 0).expect("on");
        let now = Instant::now();
        let (first, refused) = limits.admit(A, now);
        assert_eq!(refused, None);
        let (_second, refused) = limits.admit(A, now);
        assert_eq!(refused, None);
        let (third, refused) = limits.admit(A, now);
        assert_eq!(refused, Some(PerIpRefusal::TooManyConnections));
        let (_other, refused) = limits.admit(B, now);
        assert_eq!(refused, None, "another address has its own count");
        drop(third);
        drop(first);
        let (_again, refused) = limits.admit(A, now);
        assert_eq!(refused, None, "closing connections frees their places");
    }

    #[test]
    fn the_rate_limit_counts_connections_per_second() {
        let limits = PerIpLimits::new(0, 3).expect("on");
        let start = Instant::now();
        for _ in 0..3 {
            let (_guard, refused) = limits.admit(A, start);
            assert_eq!(refused, None);
        }
        let (_guard, refused) = limits.admit(A, start + Duration::from_millis(500));
        assert_eq!(refused, Some(PerIpRefusal::RateExceeded));
        let (_guard, refused) = limits.admit(A, start + Duration::from_millis(1001));
        assert_eq!(refused, None, "a new second starts a new count");
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let limits = PerIpLimits::new(1, 0).expect("on");
        let start = Instant::now();
        for n in 0..1100u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            drop(limits.admit(ip, start));
        }
        let later = start + Duration::from_secs(2);
        for n in 0..2000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + n));
            drop(limits.admit(ip, later));
        }
        assert!(
            limits.tracked_addresses() < 3000,
            "tracked {}",
            limits.tracked_addresses()
        );
    }
}
