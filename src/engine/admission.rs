//! Admission: every instance — a request's program and each shell child alike — holds a
//! [`Ticket`] for one pooled slot and its memory cap from the host-wide [`HostBudget`], and
//! counts against its [`Tenant`]'s share.
//!
//! Without this, a pipeline's children could fill wasmtime's pool (every other tenant then got a
//! 5xx "maximum concurrent limit reached") and the memory caps of live instances could add up to
//! far more than the machine has. Tickets are taken before an instance exists, so the pool and
//! the memory budget are never oversubscribed, and a request that cannot get one in time is told
//! to come back later instead of failing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::quota::DiskQuota;

/// Why an instance could not be admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every pool slot or the whole memory budget is in use (by anyone).
    #[error("the host is at capacity ({slots} instances, {memory_mb} MiB of memory caps in use)")]
    HostBusy {
        /// Pool slots in use.
        slots: u32,
        /// Memory caps of the live instances, summed.
        memory_mb: u64,
    },
    /// This sandbox already runs as many instances as one sandbox may.
    #[error("this sandbox already runs {max} instances at once, its limit")]
    TenantBusy {
        /// Instances one sandbox may run at once.
        max: u32,
    },
    /// The instance's memory cap is larger than the whole budget.
    #[error("a memory cap of {cap_mb} MiB exceeds the host's memory budget of {budget_mb} MiB")]
    TooLarge {
        /// The instance's memory cap.
        cap_mb: u64,
        /// The host's memory budget for all instances.
        budget_mb: u64,
    },
    /// The sandbox was deleted.
    #[error("the sandbox was deleted")]
    Cancelled,
}

#[derive(Debug, Default)]
struct InUse {
    slots: u32,
    memory: u64,
}

/// Pool slots and memory shared by every instance of the process.
#[derive(Debug)]
pub struct HostBudget {
    slots: u32,
    memory: u64,
    /// Slots and memory children (shell stages) may not take, so requests always find room to
    /// start however many pipelines are running.
    child_reserve: u32,
    child_memory_reserve: u64,
    in_use: Mutex<InUse>,
    freed: Notify,
    /// Told whenever an admission has to wait: whoever holds memory it could give back (idle
    /// kernels) should.
    pressure: Notify,
}

impl HostBudget {
    /// A budget of `slots` instances whose memory caps add up to at most `memory` bytes.
    pub fn new(slots: u32, memory: u64) -> Self {
        let slots = slots.max(1);
        Self {
            slots,
            memory,
            child_reserve: slots / 8,
            child_memory_reserve: memory / 8,
            in_use: Mutex::new(InUse::default()),
            freed: Notify::new(),
            pressure: Notify::new(),
        }
    }

    /// Instances and memory-cap bytes in use now.
    pub fn in_use(&self) -> (u32, u64) {
        let used = self.lock();
        (used.slots, used.memory)
    }

    /// The limits: slots and memory bytes.
    pub fn capacity(&self) -> (u32, u64) {
        (self.slots, self.memory)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InUse> {
        self.in_use.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket now, or why not. Children leave an eighth of the slots and of the memory free.
    pub fn try_admit(
        self: &Arc<Self>,
        memory: u64,
        tenant: Option<&Arc<Tenant>>,
        child: bool,
    ) -> Result<Ticket, Refusal> {
        if memory > self.memory {
            return Err(Refusal::TooLarge {
                cap_mb: memory >> 20,
                budget_mb: self.memory >> 20,
            });
        }
        if let Some(tenant) = tenant {
            if tenant.is_cancelled() {
                return Err(Refusal::Cancelled);
            }
            tenant.enter()?;
        }
        let mut used = self.lock();
        let (slot_limit, memory_limit) = if child {
            (
                self.slots - self.child_reserve,
                self.memory - self.child_memory_reserve,
            )
        } else {
            (self.slots, self.memory)
        };
        if used.slots >= slot_limit || used.memory + memory > memory_limit {
            drop(used);
            if let Some(tenant) = tenant {
                tenant.leave();
            }
            return Err(Refusal::HostBusy {
                slots: self.slots,
                memory_mb: self.memory >> 20,
            });
        }
        used.slots += 1;
        used.memory += memory;
        Ok(Ticket {
            budget: self.clone(),
            slots: 1,
            memory,
            tenant: tenant.cloned(),
        })
    }

    /// Memory without a slot, now or not at all.
    fn try_admit_memory(self: &Arc<Self>, memory: u64) -> Result<Ticket, Refusal> {
        if memory > self.memory {
            return Err(Refusal::TooLarge {
                cap_mb: memory >> 20,
                budget_mb: self.memory >> 20,
            });
        }
        let mut used = self.lock();
        if used.memory + memory > self.memory {
            return Err(Refusal::HostBusy {
                slots: self.slots,
                memory_mb: self.memory >> 20,
            });
        }
        used.memory += memory;
        Ok(Ticket {
            budget: self.clone(),
            slots: 0,
            memory,
            tenant: None,
        })
    }

    /// Memory without a slot, for an instance that already has one and may now grow (a kernel
    /// running a cell), waiting up to `wait`.
    pub async fn admit_memory(
        self: &Arc<Self>,
        memory: u64,
        wait: Duration,
    ) -> Result<Ticket, Refusal> {
        self.wait_for(None, wait, || self.try_admit_memory(memory))
            .await
    }

    /// Makes `ticket` hold `memory` bytes from now on. Used when a kernel settles between cells
    /// (its cell's hold is released at the same time), so the budget is not checked.
    pub fn set_memory(&self, ticket: &mut Ticket, memory: u64) {
        {
            let mut used = self.lock();
            used.memory = used.memory.saturating_sub(ticket.memory) + memory;
        }
        let shrunk = memory < ticket.memory;
        ticket.memory = memory;
        if shrunk {
            self.freed.notify_waiters();
        }
    }

    /// Returns when an admission is waiting for slots or memory (at once if one waited since
    /// the last call).
    pub async fn pressure(&self) {
        self.pressure.notified().await;
    }

    /// A ticket, waiting up to `wait` for one to be released.
    pub async fn admit(
        self: &Arc<Self>,
        memory: u64,
        tenant: Option<&Arc<Tenant>>,
        wait: Duration,
    ) -> Result<Ticket, Refusal> {
        self.wait_for(tenant, wait, || self.try_admit(memory, tenant, false))
            .await
    }

    /// Retries `attempt` whenever a ticket is released, until it succeeds, `wait` has passed,
    /// or `tenant` is cancelled.
    async fn wait_for(
        &self,
        tenant: Option<&Arc<Tenant>>,
        wait: Duration,
        attempt: impl Fn() -> Result<Ticket, Refusal>,
    ) -> Result<Ticket, Refusal> {
        let deadline = Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match attempt() {
                Ok(ticket) => return Ok(ticket),
                Err(e @ (Refusal::TooLarge { .. } | Refusal::Cancelled)) => return Err(e),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(refusal) => {
                    // Only the host's slots and memory can be given back by others; a sandbox at
                    // its own instance limit waits for its own instances.
                    if matches!(refusal, Refusal::HostBusy { .. }) {
                        self.pressure.notify_one();
                    }
                    let cancelled = async {
                        match tenant {
                            Some(t) => t.cancelled().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = &mut freed => {}
                        () = cancelled => return Err(Refusal::Cancelled),
                        // Every ticket's release (a tenant's own included) notifies `freed`.
                        () = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
            }
        }
    }

    fn release(&self, slots: u32, memory: u64) {
        {
            let mut used = self.lock();
            used.slots = used.slots.saturating_sub(slots);
            used.memory = used.memory.saturating_sub(memory);
        }
        self.freed.notify_waiters();
    }
}

/// One admitted instance's hold on the budget; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    budget: Arc<HostBudget>,
    slots: u32,
    memory: u64,
    tenant: Option<Arc<Tenant>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(tenant) = &self.tenant {
            tenant.leave();
        }
        self.budget.release(self.slots, self.memory);
    }
}

/// What the engine tracks for one sandbox across its executions: how many instances it runs
/// (capped, so one sandbox cannot take every slot), a cancellation signal for when it is
/// deleted, and its disk quota.
#[derive(Debug)]
pub struct Tenant {
    max_instances: u32,
    live: AtomicU32,
    cancel: watch::Sender<bool>,
    disk: Option<Arc<DiskQuota>>,
}

impl Tenant {
    /// A tenant that may run `max_instances` instances at once, writing at most what `disk`
    /// allows.
    pub fn new(max_instances: u32, disk: Option<Arc<DiskQuota>>) -> Self {
        Self {
            max_instances: max_instances.max(1),
            live: AtomicU32::new(0),
            cancel: watch::Sender::new(false),
            disk,
        }
    }

    /// Instances running now.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::SeqCst)
    }

    /// The disk quota its writes are charged to.
    pub fn disk(&self) -> Option<&Arc<DiskQuota>> {
        self.disk.as_ref()
    }

    /// Stops every running instance of this tenant and refuses new ones.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the tenant is cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        // The sender lives as long as `self`, so this only ends on cancellation.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }

    fn enter(&self) -> Result<(), Refusal> {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_instances).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Refusal::TenantBusy {
                max: self.max_instances,
            })
    }

    fn leave(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `budget.admit(memory, tenant, wait)` in a task of its own.
    fn admit_in_background(
        budget: &Arc<HostBudget>,
        memory: u64,
        tenant: Option<&Arc<Tenant>>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<Result<Ticket, Refusal>> {
        let (budget, tenant) = (budget.clone(), tenant.cloned());
        tokio::spawn(async move { budget.admit(memory, tenant.as_ref(), wait).await })
    }

    #[tokio::test]
    async fn a_waiting_admission_signals_pressure_and_gets_what_is_given_back() {
        let budget = Arc::new(HostBudget::new(8, 1000));
        let held = budget.try_admit(800, None, false).expect("admit");
        let waiter = admit_in_background(&budget, 500, None, Duration::from_secs(10));
        // Whoever holds memory hears about the waiter, and gives some back.
        tokio::time::timeout(Duration::from_secs(5), budget.pressure())
            .await
            .expect("pressure signalled");
        drop(held);
        let ticket = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("admitted after the release")
            .expect("task")
            .expect("ticket");
        assert_eq!(budget.in_use(), (1, 500));
        drop(ticket);
        // Nothing waits now: no pressure.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), budget.pressure())
                .await
                .is_err()
        );
        // A sandbox at its own instance limit waits for its own instances: no pressure.
        let tenant = Arc::new(Tenant::new(1, None));
        let own = budget.try_admit(100, Some(&tenant), false).expect("admit");
        let waiter = admit_in_background(&budget, 100, Some(&tenant), Duration::from_millis(300));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), budget.pressure())
                .await
                .is_err()
        );
        assert_eq!(
            waiter.await.expect("task").err(),
            Some(Refusal::TenantBusy { max: 1 })
        );
        drop(own);
    }

    #[test]
    fn slots_memory_and_tenant_shares_are_never_oversubscribed() {
        let budget = Arc::new(HostBudget::new(8, 1000));
        let tenant = Arc::new(Tenant::new(3, None));
        let a: Vec<Ticket> = (0..3)
            .map(|_| budget.try_admit(100, Some(&tenant), false).expect("admit"))
            .collect();
        assert_eq!(
            budget.try_admit(100, Some(&tenant), false).err(),
            Some(Refusal::TenantBusy { max: 3 })
        );
        // Memory: 300 in use, 700 left.
        let big = budget.try_admit(700, None, false).expect("fits exactly");
        assert!(matches!(
            budget.try_admit(1, None, false),
            Err(Refusal::HostBusy { .. })
        ));
        drop(big);
        drop(a);
        assert_eq!(budget.in_use(), (0, 0));
        assert_eq!(tenant.live(), 0);
        assert!(matches!(
            budget.try_admit(1001, None, false),
            Err(Refusal::TooLarge { .. })
        ));
    }

    #[test]
    fn children_leave_a_reserve_for_requests() {
        let budget = Arc::new(HostBudget::new(16, 1 << 40));
        let children: Vec<Ticket> = (0..14)
            .map(|_| budget.try_admit(1, None, true).expect("child"))
            .collect();
        assert!(budget.try_admit(1, None, true).is_err());
        let request = budget
            .try_admit(1, None, false)
            .expect("request still admitted");
        drop((children, request));
        // The same for memory: children stop at seven eighths of it.
        let budget = Arc::new(HostBudget::new(100, 800));
        let child = budget.try_admit(700, None, true).expect("child");
        assert!(budget.try_admit(1, None, true).is_err());
        let request = budget.try_admit(100, None, false).expect("request");
        drop((child, request));
    }

    #[tokio::test]
    async fn waiting_admission_gets_a_released_slot_or_gives_up() {
        let budget = Arc::new(HostBudget::new(1, 1 << 30));
        let held = budget.try_admit(1, None, false).expect("first");
        let waited = Instant::now();
        assert!(budget
            .admit(1, None, Duration::from_millis(100))
            .await
            .is_err());
        assert!(waited.elapsed() >= Duration::from_millis(100));
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        budget
            .admit(1, None, Duration::from_secs(5))
            .await
            .expect("admitted after release");
        releaser.await.expect("join");
    }

    #[tokio::test]
    async fn memory_holds_take_no_slot_and_wait_for_memory() {
        let budget = Arc::new(HostBudget::new(1, 100));
        let slot = budget.try_admit(40, None, false).expect("slot");
        let hold = budget
            .admit_memory(60, Duration::ZERO)
            .await
            .expect("memory without a slot while the only slot is taken");
        assert_eq!(budget.in_use(), (1, 100));
        assert!(matches!(
            budget.admit_memory(101, Duration::from_secs(5)).await,
            Err(Refusal::TooLarge { .. })
        ));
        let waited = Instant::now();
        assert!(matches!(
            budget.admit_memory(1, Duration::from_millis(100)).await,
            Err(Refusal::HostBusy { .. })
        ));
        assert!(waited.elapsed() >= Duration::from_millis(100));
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(hold);
        });
        budget
            .admit_memory(60, Duration::from_secs(5))
            .await
            .expect("admitted after release");
        releaser.await.expect("join");
        drop(slot);
    }

    #[tokio::test]
    async fn cancelling_a_tenant_refuses_and_wakes_waiters() {
        let budget = Arc::new(HostBudget::new(1, 1 << 30));
        let tenant = Arc::new(Tenant::new(4, None));
        let _held = budget.try_admit(1, None, false).expect("first");
        let waiter = admit_in_background(&budget, 1, Some(&tenant), Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
        tenant.cancel();
        assert_eq!(waiter.await.expect("join").err(), Some(Refusal::Cancelled));
        assert_eq!(
            budget.try_admit(1, Some(&tenant), false).err(),
            Some(Refusal::Cancelled)
        );
    }
}
