//! User presence (CTAP 2.1 §6.1.2 step 14, §6.2.2, §6.6, §6.9): one policy used by every
//! command that needs a touch.
//!
//! While a command waits, the transport sends KEEPALIVE(UPNEEDED) (it reads
//! [`RequestContext::up_needed`]) and forwards CTAPHID_CANCEL as [`Signal::Cancel`].
//! A waiting command blocks on a channel, never polls.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::StatusCode;

/// How long a command waits for the user before CTAP2_ERR_USER_ACTION_TIMEOUT. 30 s is
/// what hardware keys and Chrome use.
pub const USER_PRESENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// `vkey serve --presence MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceMode {
    /// Grant at once, like Chrome's automaticPresenceSimulation.
    Auto,
    /// Refuse: OPERATION_DENIED.
    Deny,
    /// Ask on the terminal (or let the control interface answer).
    Prompt,
    /// Grant after this long (KEEPALIVE UPNEEDED meanwhile; CANCEL ends it early).
    Delay(Duration),
}

impl FromStr for PresenceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PresenceMode::Auto),
            "deny" => Ok(PresenceMode::Deny),
            "prompt" => Ok(PresenceMode::Prompt),
            _ => match s.strip_prefix("delay:").map(str::parse::<u64>) {
                Some(Ok(ms)) => Ok(PresenceMode::Delay(Duration::from_millis(ms))),
                _ => Err(format!("'{s}': expected auto, deny, prompt or delay:MS")),
            },
        }
    }
}

/// What may reach a waiting command from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// CTAPHID_CANCEL, INIT resync or disconnect: answer KEEPALIVE_CANCEL.
    Cancel,
    /// The user (terminal prompt, control interface) approved or denied.
    Presence(bool),
}

/// The per-request link between a running command and its transport.
pub struct RequestContext {
    signals: Receiver<Signal>,
    sender: Sender<Signal>,
    up_needed: Arc<AtomicBool>,
}

/// The transport's end of a [`RequestContext`].
#[derive(Clone)]
pub struct RequestHandle {
    sender: Sender<Signal>,
    up_needed: Arc<AtomicBool>,
}

impl RequestHandle {
    pub fn cancel(&self) {
        let _ = self.sender.send(Signal::Cancel);
    }
    /// Whether the command is waiting for the user (KEEPALIVE status UPNEEDED).
    pub fn up_needed(&self) -> bool {
        self.up_needed.load(Ordering::Acquire)
    }
}

impl RequestContext {
    pub fn new() -> (RequestContext, RequestHandle) {
        let (sender, signals) = mpsc::channel();
        let up_needed = Arc::new(AtomicBool::new(false));
        let handle = RequestHandle {
            sender: sender.clone(),
            up_needed: up_needed.clone(),
        };
        (
            RequestContext {
                signals,
                sender,
                up_needed,
            },
            handle,
        )
    }

    /// Waits for a signal until `deadline`; `None` on timeout.
    fn wait(&self, deadline: Instant) -> Option<Signal> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Disconnected cannot happen while `self.sender` lives; it reads as a timeout.
        self.signals.recv_timeout(left).ok()
    }
}

/// Marks the request as waiting for the user while alive.
struct UpNeeded<'a>(&'a AtomicBool);
impl<'a> UpNeeded<'a> {
    fn new(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        UpNeeded(flag)
    }
}
impl Drop for UpNeeded<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The presence policy of one key. Cheap to clone; clones share the prompt slot.
#[derive(Clone)]
pub struct Presence {
    mode: PresenceMode,
    /// The request waiting for an answer from the terminal / control interface.
    waiting: Arc<Mutex<Option<Sender<Signal>>>>,
}

impl Presence {
    pub fn new(mode: PresenceMode) -> Presence {
        Presence {
            mode,
            waiting: Arc::new(Mutex::new(None)),
        }
    }

    pub fn mode(&self) -> PresenceMode {
        self.mode
    }

    /// Answers the request that waits for the user, if any. Returns whether one waited.
    pub fn answer(&self, approve: bool) -> bool {
        let slot = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(tx) => tx.send(Signal::Presence(approve)).is_ok(),
            None => false,
        }
    }

    /// Tests user presence for `what` (shown to a human in prompt mode).
    pub fn request(&self, ctx: &RequestContext, what: &str) -> Result<(), StatusCode> {
        // A CANCEL that arrived before we started waiting still counts (§11.2.9.1.5).
        if let Ok(Signal::Cancel) = ctx.signals.try_recv() {
            return Err(StatusCode::KeepaliveCancel);
        }
        let (limit, grant_on_timeout) = match self.mode {
            PresenceMode::Auto => return Ok(()),
            PresenceMode::Deny => return Err(StatusCode::OperationDenied),
            PresenceMode::Delay(d) if d <= USER_PRESENCE_TIMEOUT => (d, true),
            PresenceMode::Delay(_) => (USER_PRESENCE_TIMEOUT, false),
            PresenceMode::Prompt => (USER_PRESENCE_TIMEOUT, false),
        };
        let _up = UpNeeded::new(&ctx.up_needed);
        let registered = self.mode == PresenceMode::Prompt || !grant_on_timeout;
        if registered {
            *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.sender.clone());
            if self.mode == PresenceMode::Prompt {
                eprintln!("vkey: touch requested: {what}. Approve? [y/N] (30 s)");
            }
        }
        let result = match ctx.wait(Instant::now() + limit) {
            None if grant_on_timeout => Ok(()),
            None => Err(StatusCode::UserActionTimeout),
            Some(Signal::Cancel) => Err(StatusCode::KeepaliveCancel),
            Some(Signal::Presence(true)) => Ok(()),
            Some(Signal::Presence(false)) => Err(StatusCode::OperationDenied),
        };
        if registered {
            *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(PresenceMode::Auto));
        assert_eq!(
            "delay:250".parse(),
            Ok(PresenceMode::Delay(Duration::from_millis(250)))
        );
        assert!("delay:x".parse::<PresenceMode>().is_err());
        assert!("sometimes".parse::<PresenceMode>().is_err());
    }

    #[test]
    fn auto_deny_and_cancel() {
        let (ctx, h) = RequestContext::new();
        assert_eq!(Presence::new(PresenceMode::Auto).request(&ctx, "x"), Ok(()));
        assert_eq!(
            Presence::new(PresenceMode::Deny).request(&ctx, "x"),
            Err(StatusCode::OperationDenied)
        );
        // Cancel during a long delay ends the wait at once.
        let p = Presence::new(PresenceMode::Delay(Duration::from_secs(20)));
        let h2 = h.clone();
        let t = std::thread::spawn(move || {
            while !h2.up_needed() {
                std::thread::yield_now();
            }
            h2.cancel();
        });
        assert_eq!(p.request(&ctx, "x"), Err(StatusCode::KeepaliveCancel));
        t.join().unwrap();
        assert!(!h.up_needed());
    }

    #[test]
    fn prompt_is_answered_through_the_slot() {
        let p = Presence::new(PresenceMode::Prompt);
        assert!(!p.answer(true), "nobody waits yet");
        for (answer, expected) in [(true, Ok(())), (false, Err(StatusCode::OperationDenied))] {
            let (ctx, h) = RequestContext::new();
            let p2 = p.clone();
            let t = std::thread::spawn(move || {
                while !h.up_needed() {
                    std::thread::yield_now();
                }
                while !p2.answer(answer) {
                    std::thread::yield_now();
                }
            });
            assert_eq!(p.request(&ctx, "test"), expected);
            t.join().unwrap();
        }
    }
}
