//! A circuit breaker: after `threshold` calls in a row have failed, calls
//! fail at once for a cool-down; then one trial call goes through, and its
//! outcome closes the breaker or opens it again. A dead provider so costs
//! callers nothing but an error, instead of a timeout and retries each.
//!
//! The cool-down starts at [`FIRST_COOL_DOWN`] and doubles with each failed
//! trial up to `cool_down`: a provider back after a blip is tried again
//! within a second, and one that stays away is asked once per `cool_down`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    /// Open until then; `None` when closed.
    open_until: Option<Instant>,
    /// A trial call is under way after the cool-down; others still wait.
    trial: bool,
    /// The cool-down the breaker last opened for.
    last_cool_down: Option<Duration>,
}

/// The first cool-down after the breaker opens.
pub const FIRST_COOL_DOWN: Duration = Duration::from_millis(500);

/// Why a call may not go through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub failures_in_a_row: u32,
    /// When the next trial call will be let through.
    pub retry_in: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(State::default()),
        }
    }

    /// May a call go through now? After the cool-down, lets one trial through.
    pub fn admit(&self) -> Result<(), Open> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = state.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until && !state.trial {
            state.trial = true;
            return Ok(());
        }
        Err(Open {
            failures_in_a_row: state.failures_in_a_row,
            retry_in: until.saturating_duration_since(now),
        })
    }

    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = State::default();
    }

    pub fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        state.trial = false;
        if state.failures_in_a_row >= self.threshold {
            let cool_down = state
                .last_cool_down
                .map_or(FIRST_COOL_DOWN, |last| last * 2)
                .min(self.cool_down);
            state.last_cool_down = Some(cool_down);
            state.open_until = Some(Instant::now() + cool_down);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through_after_the_cool_down() {
        let breaker = Breaker::new(3, Duration::from_millis(50));
        assert!(
            FIRST_COOL_DOWN > Duration::from_millis(50),
            "the test's cool-down is the cap"
        );
        for _ in 0..2 {
            assert!(breaker.admit().is_ok());
            breaker.failed();
        }
        assert!(breaker.admit().is_ok(), "2 failures of 3: still closed");
        breaker.failed();
        let open = breaker.admit().unwrap_err();
        assert_eq!(open.failures_in_a_row, 3);
        assert!(open.retry_in <= Duration::from_millis(50));

        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok(), "the trial call");
        assert!(breaker.admit().is_err(), "only one trial at a time");
        breaker.failed();
        assert!(breaker.admit().is_err(), "a failed trial opens it again");

        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok());
        breaker.succeeded();
        assert!(breaker.admit().is_ok());
        assert!(breaker.admit().is_ok(), "a successful trial closes it");
    }

    #[test]
    fn the_cool_down_doubles_with_each_failed_trial_up_to_its_cap() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        let mut cool_downs = Vec::new();
        for _ in 0..6 {
            breaker.failed();
            cool_downs.push(breaker.admit().unwrap_err().retry_in);
            // as if the cool-down were over and the trial failed
            breaker.state.lock().unwrap().open_until = Some(Instant::now());
            assert!(breaker.admit().is_ok(), "the trial");
        }
        let expected = [500, 1000, 2000, 4000, 5000, 5000];
        for (cool_down, ms) in cool_downs.iter().zip(expected) {
            let ms = Duration::from_millis(ms);
            assert!(
                *cool_down <= ms && *cool_down + Duration::from_millis(50) > ms,
                "{cool_downs:?}"
            );
        }
        breaker.succeeded();
        breaker.failed();
        assert!(
            breaker.admit().unwrap_err().retry_in <= FIRST_COOL_DOWN,
            "a success starts over"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.failed();
        breaker.succeeded();
        breaker.failed();
        assert!(breaker.admit().is_ok());
    }
}
