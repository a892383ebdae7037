//! The bounded table of open HTTP connections. When it is full, a new connection takes the slot
//! of the connection idle for longest (waiting for its first request, a slow header, or
//! keep-alive between requests), so idle and slowloris clients cannot lock out Prometheus. When
//! every connection is inside a handler, the new one is refused.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::{sync::Notify, time::Instant};

use super::stats::HttpStats;

/// What a connection is doing, as far as eviction cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Activity {
    /// Requests inside a handler (HTTP/1 serves one at a time; a count keeps it honest).
    in_flight: u32,
    /// When the connection last became idle (opened, or its last handler returned).
    idle_since: Instant,
}

impl Activity {
    fn is_idle(&self) -> bool {
        self.in_flight == 0
    }
}

/// The connection to close to make room: the one idle for longest; `None` when all are busy.
fn longest_idle(open: impl Iterator<Item = (u64, Activity)>) -> Option<u64> {
    open.filter(|(_, activity)| activity.is_idle())
        .min_by_key(|(id, activity)| (activity.idle_since, *id))
        .map(|(id, _)| id)
}

struct Entry {
    activity: Activity,
    /// Told once when the connection is evicted.
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

/// The open connections, at most `capacity` of them.
pub(super) struct Connections {
    capacity: usize,
    table: Mutex<Table>,
    stats: Arc<HttpStats>,
}

impl Connections {
    pub(super) fn new(capacity: usize, stats: Arc<HttpStats>) -> Arc<Connections> {
        Arc::new(Connections {
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
            stats,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection, evicting the longest idle one when full; `None` (refuse the
    /// connection) when every open connection is busy in a handler.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let now = Instant::now();
        let mut table = self.table();
        if table.open.len() >= self.capacity {
            let victim = longest_idle(table.open.iter().map(|(id, e)| (*id, e.activity)))?;
            if let Some(entry) = table.open.remove(&victim) {
                // A stored permit: the victim sees it even if it is not waiting yet.
                entry.evicted.notify_one();
                self.stats.evicted.inc();
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let evicted = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                activity: Activity {
                    in_flight: 0,
                    idle_since: now,
                },
                evicted: evicted.clone(),
            },
        );
        self.stats.open.set(table.open.len() as i64);
        Some(Slot {
            handle: SlotHandle {
                connections: self.clone(),
                id,
            },
            evicted,
        })
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Activity)) {
        if let Some(entry) = self.table().open.get_mut(&id) {
            change(&mut entry.activity);
        }
    }

    fn release(&self, id: u64) {
        let mut table = self.table();
        table.open.remove(&id);
        self.stats.open.set(table.open.len() as i64);
    }
}

/// One admitted connection; dropping it frees the slot.
pub(super) struct Slot {
    handle: SlotHandle,
    evicted: Arc<Notify>,
}

impl Slot {
    /// Completes when the connection was chosen to make room for a newer one.
    pub(super) async fn evicted(&self) {
        self.evicted.notified().await;
    }

    /// A cheap handle for the connection's service, to mark requests busy.
    pub(super) fn handle(&self) -> SlotHandle {
        self.handle.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.handle.connections.release(self.handle.id);
    }
}

/// Marks the requests of one connection as busy (not evictable).
#[derive(Clone)]
pub(super) struct SlotHandle {
    connections: Arc<Connections>,
    id: u64,
}

impl SlotHandle {
    /// Busy until the guard is dropped (when the handler's response is ready).
    pub(super) fn busy(&self) -> Busy {
        self.connections.update(self.id, |a| a.in_flight += 1);
        Busy(self.clone())
    }
}

/// A request inside a handler.
pub(super) struct Busy(SlotHandle);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0.connections.update(self.0.id, |a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = now;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn idle(since: Instant) -> Activity {
        Activity {
            in_flight: 0,
            idle_since: since,
        }
    }

    #[test]
    fn the_connection_idle_for_longest_is_chosen_and_busy_ones_never() {
        let t0 = Instant::now();
        let busy = Activity {
            in_flight: 1,
            idle_since: t0,
        };
        let open = [
            (1, idle(t0 + Duration::from_secs(2))),
            (2, busy),
            (3, idle(t0 + Duration::from_secs(1))),
            (4, idle(t0 + Duration::from_secs(3))),
        ];
        assert_eq!(longest_idle(open.into_iter()), Some(3));
        assert_eq!(longest_idle([(2, busy), (5, busy)].into_iter()), None);
        assert_eq!(longest_idle(std::iter::empty()), None);
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_refuses_when_all_are_busy() {
        let stats = Arc::new(HttpStats::default());
        let connections = Connections::new(2, stats.clone());
        let first = connections.admit().expect("room");
        let second = connections.admit().expect("room");
        // The first becomes busy, so the second (idle) is the one to go.
        let first_busy = first.handle().busy();
        let third = connections.admit().expect("the idle second makes room");
        assert!(connections.table().open.contains_key(&first.handle.id));
        assert!(!connections.table().open.contains_key(&second.handle.id));
        let _third_busy = third.handle().busy();
        assert!(connections.admit().is_none(), "every connection is busy");
        assert_eq!((stats.evicted.get(), stats.open.get()), (1, 2));
        // The evicted connection was told; its late drop frees nothing of the others.
        drop(second);
        assert_eq!(connections.table().open.len(), 2);
        drop(first_busy);
        let fourth = connections
            .admit()
            .expect("the first, idle again, makes room");
        assert!(!connections.table().open.contains_key(&first.handle.id));
        drop((first, third, fourth));
        assert_eq!((stats.evicted.get(), stats.open.get()), (2, 0));
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_even_before_it_waits() {
        let connections = Connections::new(1, Arc::new(HttpStats::default()));
        let old = connections.admit().unwrap();
        let _new = connections.admit().unwrap();
        old.evicted().await;
    }
}
