//! User presence (CTAP 2.1 §6.1.2 step 14, §6.2.2, §6.6, §6.9): one policy used by every
//! command that needs a touch.
//!
//! While a command waits, the transport sends KEEPALIVE(UPNEEDED) (it reads
//! [`RequestContext::up_needed`]) and forwards CTAPHID_CANCEL as [`Signal::Cancel`].
//! A waiting command blocks on a channel, never polls.
//!
//! CTAP1/U2F clients poll instead: a U2F command that needs a touch is answered at once,
//! SW_CONDITIONS_NOT_SATISFIED until the touch is given, and the client asks again
//! (U2F Raw Message Formats v1.2 §5.1). [`Presence::poll`] serves them with the same
//! policy, numbers and answers: the first poll asks (a numbered touch request), an
//! approval (or the delay's end) gives a touch that counts for [`POLLED_TOUCH_WINDOW`],
//! and the next poll inside that window takes it.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::StatusCode;
use super::runtime::{Clock, SystemClock};

/// How long a command waits for the user before CTAP2_ERR_USER_ACTION_TIMEOUT. 30 s is
/// what hardware keys and Chrome use.
pub const USER_PRESENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a touch given to a polling (CTAP1/U2F) client counts before a command takes
/// it: about what hardware keys allow between the touch and the client's next try.
pub const POLLED_TOUCH_WINDOW: Duration = Duration::from_secs(10);

/// `vkey serve --presence MODE`, switchable while the key runs (control interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceMode {
    /// Grant at once, like Chrome's automaticPresenceSimulation.
    Auto,
    /// Refuse: OPERATION_DENIED.
    Deny,
    /// Ask on the terminal (the control interface may answer too).
    Prompt,
    /// Wait for an answer through the control interface (approve / deny).
    Manual,
    /// Grant after this long (KEEPALIVE UPNEEDED meanwhile; CANCEL ends it early).
    Delay(Duration),
}

impl PresenceMode {
    /// Whether a waiting request is registered for an answer from outside.
    fn answered_from_outside(self) -> bool {
        matches!(self, PresenceMode::Prompt | PresenceMode::Manual)
            || matches!(self, PresenceMode::Delay(d) if d > USER_PRESENCE_TIMEOUT)
    }
}

impl std::fmt::Display for PresenceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresenceMode::Auto => f.write_str("auto"),
            PresenceMode::Deny => f.write_str("deny"),
            PresenceMode::Prompt => f.write_str("prompt"),
            PresenceMode::Manual => f.write_str("manual"),
            PresenceMode::Delay(d) => write!(f, "delay:{}", d.as_millis()),
        }
    }
}

impl FromStr for PresenceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PresenceMode::Auto),
            "deny" => Ok(PresenceMode::Deny),
            "prompt" => Ok(PresenceMode::Prompt),
            "manual" => Ok(PresenceMode::Manual),
            _ => match s.strip_prefix("delay:").map(str::parse::<u64>) {
                Some(Ok(ms)) => Ok(PresenceMode::Delay(Duration::from_millis(ms))),
                _ => Err(format!(
                    "'{s}': expected auto, deny, manual, prompt or delay:MS"
                )),
            },
        }
    }
}

/// What a touch is asked for: shown in the prompt, listed as pending, sent as the
/// presenceRequested event.
#[derive(Clone, Copy, Debug)]
pub struct Touch<'a> {
    /// The CTAP command (its spec name), e.g. "makeCredential".
    pub command: &'static str,
    pub rp_id: Option<&'a str>,
    pub user_name: Option<&'a str>,
}

/// A request waiting for the user's answer (`GET …/presence/pending`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTouch {
    /// Numbers the requests of one key: an answer names the request it approves.
    pub id: u64,
    pub command: &'static str,
    pub rp_id: Option<String>,
    pub user_name: Option<String>,
}

/// Why an answer was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// No request waits for the user.
    NoneWaiting,
    /// The answer names request `asked`, but `waiting` is the one that waits now (the
    /// one the answer was for has ended).
    Stale { asked: u64, waiting: u64 },
}

/// Makes text from a peer safe to print on a terminal: control characters and the
/// Unicode controls that reorder or hide text are escaped (`\u{1b}`).
pub fn escape_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
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

/// Touch numbers are unique in the process, so that one terminal can answer the
/// prompts of several keys.
static LAST_TOUCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Shared {
    mode: PresenceMode,
    /// The request waiting for an answer from the terminal / control interface.
    waiting: Option<Waiting>,
    /// The answer to a polled touch request (id, approved, when), kept for its next poll.
    polled_answer: Option<(u64, bool, Instant)>,
    /// The authenticator's clock: when a polled touch was answered, when it lapses.
    clock: Arc<dyn Clock>,
}

struct Waiting {
    touch: PendingTouch,
    waiter: Waiter,
}

enum Waiter {
    /// A command blocked in [`Presence::request`]: the answer goes down its channel.
    Blocked(Sender<Signal>),
    /// A polled touch request: its client asks again, or the request lapses at this time.
    Polled { lapses: Instant },
}

impl Shared {
    /// The request that waits now: a polled one only until it lapses.
    fn waiting(&self) -> Option<&Waiting> {
        let now = self.clock.now();
        self.waiting
            .as_ref()
            .filter(|w| !matches!(w.waiter, Waiter::Polled { lapses } if now > lapses))
    }

    /// Ends the wait of request `id`, if it is the one waiting.
    fn withdraw(&mut self, id: u64) {
        if self.waiting.as_ref().is_some_and(|w| w.touch.id == id) {
            self.waiting = None;
        }
    }
}

/// The touch of a CTAP1/U2F client that polls: the request it asked for and is waiting
/// on. Part of the authenticator's volatile state (a power cycle clears it).
#[derive(Debug, Default)]
pub struct PolledTouch {
    asked: Option<Asked>,
}

#[derive(Debug)]
struct Asked {
    id: u64,
    /// The mode it was asked under: a switch of mode asks again under the new one.
    mode: PresenceMode,
    at: Instant,
}

impl PolledTouch {
    /// The number of the touch request this client waits on.
    pub fn asked_id(&self) -> Option<u64> {
        self.asked.as_ref().map(|a| a.id)
    }
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The user's touch: the command may go on (the touch is used up).
    Given,
    /// Not yet: ask again.
    NotYet,
    /// The user said no (or the mode is deny); the next poll asks again.
    Denied,
}

/// The presence policy of one key. Cheap to clone; clones share the mode and the
/// waiting request, so the control interface can switch and answer while the
/// authenticator thread waits.
#[derive(Clone)]
pub struct Presence {
    shared: Arc<Mutex<Shared>>,
}

impl Presence {
    pub fn new(mode: PresenceMode) -> Presence {
        Presence {
            shared: Arc::new(Mutex::new(Shared {
                mode,
                waiting: None,
                polled_answer: None,
                clock: Arc::new(SystemClock),
            })),
        }
    }

    /// Times polled touches with the authenticator's clock (it defaults to the system's).
    pub fn use_clock(&self, clock: Arc<dyn Clock>) {
        self.lock().clock = clock;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> PresenceMode {
        self.lock().mode
    }

    /// Switches the mode for the requests that ask from now on; a request already
    /// waiting keeps waiting for its answer (or CANCEL, or the timeout).
    pub fn set_mode(&self, mode: PresenceMode) {
        self.lock().mode = mode;
    }

    /// The request waiting for the user, if any.
    pub fn pending(&self) -> Option<PendingTouch> {
        self.lock().waiting().map(|w| w.touch.clone())
    }

    /// The request waiting for the user while its command blocks the authenticator
    /// (a polled CTAP1/U2F request does not: its client asks again).
    pub fn blocking(&self) -> Option<PendingTouch> {
        self.lock()
            .waiting()
            .filter(|w| matches!(w.waiter, Waiter::Blocked(_)))
            .map(|w| w.touch.clone())
    }

    /// Answers the waiting request. With `id`, only if it is still the one waiting: an
    /// answer never approves a request the user did not see.
    pub fn answer(&self, id: Option<u64>, approve: bool) -> Result<u64, AnswerError> {
        let mut shared = self.lock();
        let (waiting, blocked) = match shared.waiting() {
            None => return Err(AnswerError::NoneWaiting),
            Some(w) => (
                w.touch.id,
                match &w.waiter {
                    Waiter::Blocked(tx) => Some(tx.clone()),
                    Waiter::Polled { .. } => None,
                },
            ),
        };
        if let Some(asked) = id
            && asked != waiting
        {
            return Err(AnswerError::Stale { asked, waiting });
        }
        match blocked {
            Some(tx) => tx
                .send(Signal::Presence(approve))
                .map_err(|_| AnswerError::NoneWaiting)?,
            None => {
                // Kept with its time for the client's next poll; no longer waiting.
                let now = shared.clock.now();
                shared.polled_answer = Some((waiting, approve, now));
                shared.waiting = None;
            }
        }
        Ok(waiting)
    }

    /// Ends the wait of polled request `id` (its client is gone: power cycle).
    pub fn withdraw(&self, id: u64) {
        self.lock().withdraw(id);
    }

    /// Tests user presence for `touch`. `asked` is told the touch's number and details
    /// before any wait (the presenceRequested event).
    pub fn request(
        &self,
        ctx: &RequestContext,
        touch: Touch<'_>,
        asked: impl FnOnce(&PendingTouch),
    ) -> Result<(), StatusCode> {
        // A CANCEL that arrived before we started waiting still counts (§11.2.9.1.5).
        if let Ok(Signal::Cancel) = ctx.signals.try_recv() {
            return Err(StatusCode::KeepaliveCancel);
        }
        let (mode, pending) = {
            let mut shared = self.lock();
            let pending = PendingTouch {
                id: LAST_TOUCH.fetch_add(1, Ordering::Relaxed) + 1,
                command: touch.command,
                rp_id: touch.rp_id.map(str::to_owned),
                user_name: touch.user_name.map(str::to_owned),
            };
            let mode = shared.mode;
            if mode.answered_from_outside() {
                // One request at a time per key (CTAP): this one replaces any leftover.
                shared.waiting = Some(Waiting {
                    touch: pending.clone(),
                    waiter: Waiter::Blocked(ctx.sender.clone()),
                });
            }
            (mode, pending)
        };
        asked(&pending);
        let (limit, grant_on_timeout) = match mode {
            PresenceMode::Auto => return Ok(()),
            PresenceMode::Deny => return Err(StatusCode::OperationDenied),
            PresenceMode::Delay(d) if d <= USER_PRESENCE_TIMEOUT => (d, true),
            PresenceMode::Delay(_) | PresenceMode::Prompt | PresenceMode::Manual => {
                (USER_PRESENCE_TIMEOUT, false)
            }
        };
        let _up = UpNeeded::new(&ctx.up_needed);
        if mode == PresenceMode::Prompt {
            eprintln!("{}", prompt_line(&pending));
        }
        let result = match ctx.wait(Instant::now() + limit) {
            None if grant_on_timeout => Ok(()),
            None => Err(StatusCode::UserActionTimeout),
            Some(Signal::Cancel) => Err(StatusCode::KeepaliveCancel),
            Some(Signal::Presence(true)) => Ok(()),
            Some(Signal::Presence(false)) => Err(StatusCode::OperationDenied),
        };
        self.lock().withdraw(pending.id);
        result
    }

    /// Tests user presence for a client that polls (CTAP1/U2F), without waiting: `state`
    /// is that client's touch. The first poll asks (`asked` is told, as for
    /// [`request`](Self::request)); under `manual` / `prompt` the request waits for an
    /// answer while the client keeps polling (it lapses 30 s after the last poll), under
    /// `delay:MS` the touch comes MS after the first poll. Either way the touch counts
    /// for [`POLLED_TOUCH_WINDOW`] and the first poll within it takes it; after that
    /// the next poll asks anew. `auto` gives it at once, `deny` never.
    pub fn poll(
        &self,
        state: &mut PolledTouch,
        touch: Touch<'_>,
        asked: impl FnOnce(&PendingTouch),
    ) -> Poll {
        let mut shared = self.lock();
        let now = shared.clock.now();
        let mode = shared.mode;
        if let Some(a) = state.asked.take() {
            if a.mode == mode {
                if let Some(outcome) = Self::outcome(&mut shared, &a, now) {
                    if outcome == Poll::NotYet {
                        state.asked = Some(a);
                    }
                    return outcome;
                }
            } else {
                shared.withdraw(a.id);
            }
        }
        // Ask anew.
        let pending = PendingTouch {
            id: LAST_TOUCH.fetch_add(1, Ordering::Relaxed) + 1,
            command: touch.command,
            rp_id: touch.rp_id.map(str::to_owned),
            user_name: touch.user_name.map(str::to_owned),
        };
        let outcome = match mode {
            PresenceMode::Auto => Poll::Given,
            PresenceMode::Deny => Poll::Denied,
            PresenceMode::Delay(d) if d.is_zero() => Poll::Given,
            _ => {
                if mode.answered_from_outside() {
                    shared.waiting = Some(Waiting {
                        touch: pending.clone(),
                        waiter: Waiter::Polled {
                            lapses: now + USER_PRESENCE_TIMEOUT,
                        },
                    });
                }
                state.asked = Some(Asked {
                    id: pending.id,
                    mode,
                    at: now,
                });
                Poll::NotYet
            }
        };
        drop(shared);
        asked(&pending);
        if mode == PresenceMode::Prompt {
            eprintln!("{}", prompt_line(&pending));
        }
        outcome
    }

    /// What became of the touch request `a`; `None`: it is over without a touch to
    /// take (lapsed, replaced, or its window passed): ask anew.
    fn outcome(shared: &mut Shared, a: &Asked, now: Instant) -> Option<Poll> {
        let within = |given: Instant| now >= given && now <= given + POLLED_TOUCH_WINDOW;
        match a.mode {
            PresenceMode::Delay(d) if !a.mode.answered_from_outside() => {
                let given = a.at + d;
                if now < given {
                    Some(Poll::NotYet)
                } else {
                    within(given).then_some(Poll::Given)
                }
            }
            _ => {
                if let Some((id, approved, at)) = shared.polled_answer
                    && id == a.id
                {
                    shared.polled_answer = None;
                    return match approved {
                        false => Some(Poll::Denied),
                        true => within(at).then_some(Poll::Given),
                    };
                }
                match shared.waiting.as_mut() {
                    Some(Waiting {
                        touch,
                        waiter: Waiter::Polled { lapses },
                    }) if touch.id == a.id && now <= *lapses => {
                        *lapses = now + USER_PRESENCE_TIMEOUT;
                        Some(Poll::NotYet)
                    }
                    _ => {
                        shared.withdraw(a.id);
                        None
                    }
                }
            }
        }
    }
}

/// The terminal prompt of `--presence prompt`: numbered, so that the answer names the
/// request the user saw; what the peer sent is escaped.
pub fn prompt_line(p: &PendingTouch) -> String {
    let mut what = p.command.to_string();
    if let Some(rp) = &p.rp_id {
        what += &format!(" for \"{}\"", escape_for_terminal(rp));
    }
    if let Some(user) = &p.user_name {
        what += &format!(" (user \"{}\")", escape_for_terminal(user));
    }
    format!(
        "vkey: touch request {id}: {what}. Approve with \"y {id}\", refuse with \"n {id}\" (30 s)",
        id = p.id
    )
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

    const T: Touch<'static> = Touch {
        command: "makeCredential",
        rp_id: Some("example.com"),
        user_name: None,
    };

    #[test]
    fn auto_deny_and_cancel() {
        let (ctx, h) = RequestContext::new();
        assert_eq!(
            Presence::new(PresenceMode::Auto).request(&ctx, T, |_| {}),
            Ok(())
        );
        assert_eq!(
            Presence::new(PresenceMode::Deny).request(&ctx, T, |_| {}),
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
        assert_eq!(p.request(&ctx, T, |_| {}), Err(StatusCode::KeepaliveCancel));
        t.join().unwrap();
        assert!(!h.up_needed());
    }

    #[test]
    fn manual_is_answered_by_number_and_stale_answers_are_refused() {
        for mode in [PresenceMode::Prompt, PresenceMode::Manual] {
            let p = Presence::new(mode);
            assert_eq!(p.answer(None, true), Err(AnswerError::NoneWaiting));
            for (answer, expected) in [(true, Ok(())), (false, Err(StatusCode::OperationDenied))] {
                let (ctx, h) = RequestContext::new();
                let p2 = p.clone();
                let t = std::thread::spawn(move || {
                    while !h.up_needed() {
                        std::thread::yield_now();
                    }
                    let waiting = p2.pending().unwrap();
                    assert_eq!(waiting.rp_id.as_deref(), Some("example.com"));
                    assert_eq!(waiting.command, "makeCredential");
                    let stale = waiting.id + 7;
                    assert_eq!(
                        p2.answer(Some(stale), answer),
                        Err(AnswerError::Stale {
                            asked: stale,
                            waiting: waiting.id
                        })
                    );
                    assert_eq!(p2.answer(Some(waiting.id), answer), Ok(waiting.id));
                });
                let mut seen = None;
                assert_eq!(p.request(&ctx, T, |t| seen = Some(t.id)), expected);
                t.join().unwrap();
                assert!(seen.is_some());
                assert_eq!(p.pending(), None);
            }
        }
    }

    #[test]
    fn mode_switches_at_run_time() {
        let p = Presence::new(PresenceMode::Auto);
        let (ctx, _h) = RequestContext::new();
        assert_eq!(p.request(&ctx, T, |_| {}), Ok(()));
        p.clone().set_mode(PresenceMode::Deny);
        assert_eq!(p.mode(), PresenceMode::Deny);
        assert_eq!(p.request(&ctx, T, |_| {}), Err(StatusCode::OperationDenied));
        assert_eq!("manual".parse(), Ok(PresenceMode::Manual));
        assert_eq!(
            PresenceMode::Delay(Duration::from_millis(5)).to_string(),
            "delay:5"
        );
    }

    #[test]
    fn prompt_escapes_what_the_peer_sent() {
        let line = prompt_line(&PendingTouch {
            id: 3,
            command: "makeCredential",
            rp_id: Some("evil\x1b[2J.com\u{202e}".into()),
            user_name: Some("a\nb".into()),
        });
        assert!(!line.chars().any(|c| c.is_control()), "{line}");
        assert!(line.contains("\\u{1b}[2J.com\\u{202e}"), "{line}");
        assert!(line.contains("\"y 3\""), "{line}");
    }
}
