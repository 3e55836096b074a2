//! Timers a connection re-arms for each request instead of creating and dropping one per
//! request: hyper's header read timeout ([`ConnTimer`]) and the upstream response timeout
//! ([`TimerSlot::arm`]); and a periodic [`Ticker`] that costs next to nothing to look at
//! between its ticks.
//!
//! A fresh `tokio::time::Sleep` takes the runtime's timer-wheel lock when it is first polled
//! (to register) and again when it is dropped (to deregister); with its allocation and the
//! runtime-handle clone that was about 1,200 instructions for each timer of each proxied
//! request. A `Sleep` that is still registered and is moved to a *later* deadline only
//! updates an atomic; the wheel moves the entry when the old deadline comes round. So each
//! timer here is kept in a [`TimerSlot`] of its connection between requests and re-armed to
//! `now + timeout`: with one timeout per slot the new deadline is never earlier than the last
//! one, and the lock is taken about once per connection instead of twice per request.
//!
//! Behaviour is that of a fresh timer: an armed timer fires at its deadline and wakes the task
//! that polled it last. A timer left armed after its request (its deadline still ahead) may
//! fire while the connection waits for nothing; that wakes the connection's task once, which
//! finds nothing to do. If the slot's timer is in use (it never is for HTTP/1.1, one request
//! at a time), a new one is made and the first one returned keeps the place.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Where a connection keeps one timer between requests. One slot per timeout length.
#[derive(Default)]
pub struct TimerSlot(Mutex<Option<Pin<Box<Sleep>>>>);

impl TimerSlot {
    /// A timer firing at `deadline`: the slot's own, re-armed, or a new one when the slot is
    /// empty (first use, or its timer is out).
    pub fn arm(self: &Arc<Self>, deadline: Instant) -> Armed {
        let kept = self.lock().take();
        let sleep = match kept {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Armed {
            sleep: Some(sleep),
            home: Arc::clone(self),
        }
    }

    /// A timer firing `timeout` from now (see [`TimerSlot::arm`]).
    pub fn arm_in(self: &Arc<Self>, timeout: Duration) -> Armed {
        self.arm(deadline_in(timeout))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pin<Box<Sleep>>>> {
        // A poisoned lock only means a holder panicked; an `Option` is still sound.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `now + timeout`, or a deadline too far away to matter when that overflows (as
/// `tokio::time::timeout` does).
pub fn deadline_in(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// A timer taken from a [`TimerSlot`]: completes at its deadline, and goes back to the slot,
/// still registered, when dropped.
pub struct Armed {
    sleep: Option<Pin<Box<Sleep>>>,
    home: Arc<TimerSlot>,
}

impl Armed {
    /// Moves the deadline (hyper re-arms its header timer this way).
    pub fn reset(&mut self, deadline: Instant) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(deadline);
        }
    }
}

impl Future for Armed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            // Unreachable: the timer leaves only in `drop`.
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            let mut slot = self.home.lock();
            if slot.is_none() {
                *slot = Some(sleep);
            }
        }
    }
}

impl hyper::rt::Sleep for Armed {}

/// hyper's timer for one connection (`http1::Builder::timer`): its header read timeout is
/// armed from the connection's own [`TimerSlot`] for every request head instead of being a
/// new tokio timer each time.
#[derive(Clone, Default)]
pub struct ConnTimer(Arc<TimerSlot>);

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.0.arm_in(duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.0.arm(deadline.into()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<Armed>() {
            Some(armed) => armed.get_mut().reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, as hyper-util's `TokioTimer` (the same under a paused test clock).
        Instant::now().into_std()
    }
}

/// A tick every `period` for a task that looks at it on every wake-up (the parking check of
/// a plain-TCP connection, `src/server.rs`), as `tokio::time::interval` with
/// `MissedTickBehavior::Delay`: the next tick is a period after the last one was seen.
///
/// A connection task wakes several times per request; polling a timer costs about 150
/// instructions each time (cooperative budget, waker registration). Once a poll has
/// registered the task's waker and the timer has not fired, a look is one atomic load. This
/// relies on the ticker being polled by one task only, which holds for a value owned by a
/// connection's future: the registered waker stays that task's.
pub struct Ticker {
    sleep: Pin<Box<Sleep>>,
    period: Duration,
    /// Polled since the last tick (the task's waker is registered).
    registered: bool,
}

impl Ticker {
    /// The first tick comes one `period` from now.
    pub fn new(period: Duration) -> Ticker {
        Ticker {
            sleep: Box::pin(tokio::time::sleep(period)),
            period,
            registered: false,
        }
    }

    /// Ready once per period; see the type's documentation.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep.as_mut().reset(deadline_in(self.period));
                self.registered = false;
                Poll::Ready(())
            }
            Poll::Pending => {
                self.registered = true;
                Poll::Pending
            }
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }
}

/// `timer` fired before the future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

pin_project_lite::pin_project! {
    /// [`within`]'s future.
    pub struct Within<F> {
        #[pin]
        fut: F,
        timer: tokio::task::Unconstrained<Armed>,
    }
}

/// Runs `fut` until it completes, or until `timer` fires first: `tokio::time::timeout` with a
/// re-armed timer. `fut` is polled first, so an answer that is ready wins; the timer is
/// polled outside the task's cooperative budget, so it fires even when `fut` used it up.
pub fn within<F: Future>(timer: Armed, fut: F) -> Within<F> {
    Within {
        fut,
        timer: tokio::task::unconstrained(timer),
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, short deadlines. Only lower bounds are asserted (a timer never fires early);
    // every wait is bounded by `bounded`, so a timer that never fires fails the test instead
    // of hanging it.

    const MS: Duration = Duration::from_millis(1);

    async fn bounded<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("the timer fired")
    }

    #[tokio::test]
    async fn an_armed_timer_fires_at_its_deadline() {
        let slot = Arc::<TimerSlot>::default();
        let start = Instant::now();
        bounded(slot.arm_in(30 * MS)).await;
        assert!(start.elapsed() >= 30 * MS);
    }

    #[tokio::test]
    async fn a_returned_timer_is_reused_and_fires_at_its_new_deadline() {
        let slot = Arc::<TimerSlot>::default();
        // Polled (registered), then dropped long before its deadline: back in the slot.
        let first = slot.arm_in(Duration::from_secs(3600));
        assert!(tokio::time::timeout(5 * MS, first).await.is_err());
        assert!(slot.lock().is_some(), "kept for the next request");
        let start = Instant::now();
        let second = slot.arm_in(40 * MS);
        assert!(slot.lock().is_none(), "taken out while armed");
        // Fires at the new deadline (an hour early for the first one's).
        bounded(second).await;
        assert!(start.elapsed() >= 40 * MS);
        assert!(slot.lock().is_some(), "and back again");
        // Later again: extended in place.
        let start = Instant::now();
        bounded(slot.arm_in(60 * MS)).await;
        assert!(start.elapsed() >= 60 * MS);
    }

    #[tokio::test]
    async fn a_second_timer_while_the_first_is_out_is_a_new_one() {
        let slot = Arc::<TimerSlot>::default();
        let start = Instant::now();
        let a = slot.arm_in(80 * MS);
        let b = slot.arm_in(20 * MS);
        bounded(b).await;
        assert!(start.elapsed() >= 20 * MS);
        bounded(a).await;
        assert!(start.elapsed() >= 80 * MS);
        assert!(slot.lock().is_some());
    }

    #[tokio::test]
    async fn hyper_resets_move_the_deadline() {
        use hyper::rt::Timer;
        let timer = ConnTimer::default();
        let start = Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        timer.reset(&mut sleep, timer.now() + 30 * MS);
        bounded(sleep).await;
        assert!(start.elapsed() >= 30 * MS);
        let start = Instant::now();
        let mut again = timer.sleep_until(timer.now() + Duration::from_secs(3600));
        timer.reset(&mut again, timer.now() + 20 * MS);
        bounded(again).await;
        assert!(start.elapsed() >= 20 * MS);
        // A deadline too far out to represent does not overflow.
        let _far = timer.sleep(Duration::MAX);
    }

    #[tokio::test]
    async fn within_answers_what_is_ready_and_times_out_what_is_not() {
        let slot = Arc::<TimerSlot>::default();
        let ready = within(slot.arm_in(Duration::from_secs(3600)), async { 7 }).await;
        assert_eq!(ready, Ok(7));
        let start = Instant::now();
        let never = bounded(within(slot.arm_in(30 * MS), std::future::pending::<()>())).await;
        assert_eq!(never, Err(TimedOut));
        assert!(start.elapsed() >= 30 * MS);
    }

    #[tokio::test]
    async fn a_future_using_up_its_budget_cannot_hold_the_timer_back() {
        let slot = Arc::<TimerSlot>::default();
        let busy = within(slot.arm_in(20 * MS), async {
            loop {
                tokio::task::consume_budget().await;
            }
        });
        assert_eq!(bounded(busy).await, Err(TimedOut));
    }

    #[tokio::test]
    async fn a_ticker_ticks_once_per_period_after_the_last_tick_seen() {
        let start = Instant::now();
        let mut ticker = Ticker::new(30 * MS);
        bounded(ticker.tick()).await;
        assert!(start.elapsed() >= 30 * MS);
        let seen = Instant::now();
        bounded(ticker.tick()).await;
        assert!(seen.elapsed() >= 25 * MS, "a period after the last tick");
        // Seen late: the next tick is a period after that (MissedTickBehavior::Delay).
        tokio::time::sleep(100 * MS).await;
        bounded(ticker.tick()).await;
        let seen = Instant::now();
        bounded(ticker.tick()).await;
        assert!(seen.elapsed() >= 25 * MS, "no burst of missed ticks");
    }

    #[tokio::test]
    async fn a_ticker_looked_at_often_still_wakes_its_task() {
        // Other wake-ups (a busy connection) poll the ticker many times between its ticks;
        // each poll after the first is only a look, and the tick must still wake the task.
        let start = Instant::now();
        let mut ticker = Ticker::new(100 * MS);
        let mut other = tokio::time::interval(2 * MS);
        let mut looks = 0;
        bounded(async {
            loop {
                tokio::select! {
                    _ = ticker.tick() => break,
                    _ = other.tick() => looks += 1,
                }
            }
        })
        .await;
        assert!(looks > 3, "{looks}");
        assert!(start.elapsed() >= 100 * MS);
    }
}
