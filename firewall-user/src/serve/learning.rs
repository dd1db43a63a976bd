//! `[dns] learn`: the DNS answers the filter holds for `serve` (see `kernel::held`),
//! learned from and handed back.
//!
//! Each answer that names one of the policy's names (its question, or a CNAME it leads
//! through) teaches that name its addresses (`names::settle`, as `serve`'s own asking
//! does), and the maps have them before the frame goes back to the interface: the program
//! that asked connects to an address already admitted. Answers of other names go back at
//! once. However the learning goes, every answer goes back, within [`LEARN_WAIT`]: a
//! policy applied more slowly goes on in the background. While a change holds the state
//! lock (a `reload`, which may itself be waiting for the answer), or `serve` is busy with
//! one of its own, the answers wait [`LEARN_WAIT_BUSY`] at most, and are learned from
//! when it is done.
use std::{
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

use tokio::io::{Interest, unix::AsyncFd};

use super::{NAMES_IDLE, Shared, Task, tell_names};
use crate::{
    kernel::{Filter, held::HeldAnswers, pins::Pins},
    names::{self, Checksum, Heard, Learned, Names},
};

/// The longest an answer waits for its names' addresses to be applied.
const LEARN_WAIT: Duration = Duration::from_secs(1);
/// The longest it waits while a change holds the state lock: `serve`'s own round of the
/// names takes milliseconds, but a `reload` may be waiting for the very answer held.
const LEARN_WAIT_BUSY: Duration = Duration::from_millis(250);
/// How often the listener's deadline moves on (see `kernel::held::LISTEN_FOR`), and the
/// names watched are read again.
const BEAT: Duration = Duration::from_secs(1);

/// Learns from the held answers for as long as `serve` runs; without a filter, with one
/// whose policy names no peer by name, or with one an earlier version put up (no held
/// answers), holds nothing open and looks again every [`NAMES_IDLE`].
pub(super) async fn learn_from_answers(shared: Arc<Shared>) -> Task {
    // The last error said, so that one repeated every few seconds is said once.
    let mut said = String::new();
    loop {
        let iface = shared.iface.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let pins = Pins::for_iface(&iface);
            if !pins.is_up() || Names::load(&pins).names.is_empty() {
                return Ok(None);
            }
            HeldAnswers::open(&pins).map(|held| held.map(|h| (pins, h)))
        })
        .await;
        let (pins, held) = match opened {
            Ok(Ok(Some(opened))) => opened,
            Ok(Ok(None)) => {
                tokio::time::sleep(NAMES_IDLE).await;
                continue;
            }
            Ok(Err(err)) => {
                let line = format!("firewall serve: learning from DNS answers: {}", crate::one_line(&err));
                if line != said {
                    eprintln!("{line}");
                    said = line;
                }
                tokio::time::sleep(NAMES_IDLE).await;
                continue;
            }
            Err(err) => {
                eprintln!("firewall serve: learning from DNS answers: {err}");
                tokio::time::sleep(NAMES_IDLE).await;
                continue;
            }
        };
        // SAFETY: the descriptor is the ring map's, owned by `held`, which the AsyncFd owns
        // in turn: open, and the same, for as long as the AsyncFd lives.
        let ring = match unsafe { AsyncFd::register_with_interest(Listening(held), Interest::READABLE) } {
            Ok(ring) => ring,
            Err(err) => {
                eprintln!("firewall serve: learning from DNS answers: {err}");
                tokio::time::sleep(NAMES_IDLE).await;
                continue;
            }
        };
        said.clear();
        if let Ended::HandBackFailed = learn_while_up(&shared, &pins, ring).await {
            // The answers pass unheld meanwhile (the deadline is cleared): better unlearned
            // than lost again at the next try.
            tokio::time::sleep(HAND_BACK_RETRY).await;
        }
    }
}

/// [`HeldAnswers`] that stop being held when dropped: the filter passes answers at once,
/// not `kernel::held::LISTEN_FOR` later, and those waiting go back.
struct Listening(HeldAnswers);

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.0.stop();
        let mut frames = Vec::new();
        self.0.drain(|frame| frames.push(frame));
        for mut frame in frames {
            let _ = names::check_checksum(&mut frame);
            let _ = self.0.release(&frame);
        }
    }
}

impl std::os::fd::AsFd for Listening {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl std::os::fd::AsRawFd for Listening {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Why [`learn_while_up`] ended.
enum Ended {
    /// The filter is down, its policy names no peer by name, or its ring failed.
    Done,
    /// An answer could not be handed back.
    HandBackFailed,
}

/// How long `serve` lets answers pass unheld after one could not be handed back.
const HAND_BACK_RETRY: Duration = Duration::from_secs(60);

/// Learns from the answers of the filter `pins` names until it is down, or its policy
/// names no peer by name, or an answer cannot be handed back.
async fn learn_while_up(shared: &Arc<Shared>, pins: &Pins, mut ring: AsyncFd<Listening>) -> Ended {
    let mut record = Names::default();
    let mut beaten: Option<Instant> = None;
    loop {
        if beaten.is_none_or(|at| at.elapsed() >= BEAT) {
            if !pins.is_up() {
                return Ended::Done;
            }
            if let Err(err) = ring.get_mut().0.listen() {
                eprintln!("firewall serve: learning from DNS answers: {}", crate::one_line(&err));
                return Ended::Done;
            }
            beaten = Some(Instant::now());
            record = Names::load(pins);
            if record.names.is_empty() {
                return Ended::Done;
            }
        }
        let Ok(ready) = tokio::time::timeout(BEAT, ring.readable_mut()).await else {
            continue;
        };
        let Ok(mut ready) = ready else {
            return Ended::Done;
        };
        let mut frames = Vec::new();
        ready.get_inner_mut().0.drain(|frame| frames.push(frame));
        ready.clear_ready();
        if frames.is_empty() {
            continue;
        }
        let mut learned = Vec::new();
        for frame in &mut frames {
            shared.reloads.dns_answers_held.inc();
            // A wrong checksum teaches nothing: the stack drops the frame, as it would have.
            if names::check_checksum(frame) == Some(Checksum::Wrong) {
                continue;
            }
            if let Some(answer) = names::read_answer(frame)
                && teaches(&record, &answer)
            {
                learned.push(answer);
            }
        }
        if !learned.is_empty() {
            learn(shared, pins, learned).await;
        }
        // Whatever the learning took, the deadline moves on before the answers go back.
        if let Err(err) = ring.get_mut().0.listen() {
            eprintln!("firewall serve: learning from DNS answers: {}", crate::one_line(&err));
        }
        let mut failed = false;
        for frame in &frames {
            if let Err(err) = ring.get_mut().0.release(frame)
                && !failed
            {
                eprintln!(
                    "firewall serve: {}; the answers pass unlearned for {}s",
                    crate::one_line(&err),
                    HAND_BACK_RETRY.as_secs()
                );
                failed = true;
            }
        }
        if failed {
            return Ended::HandBackFailed;
        }
    }
}

/// Whether `answer` teaches one of the names `record` follows an address it does not
/// hold from its own answer (the common case, `serve`'s asking and the host's programs
/// given the same, goes back at once, without the state lock).
fn teaches(record: &Names, answer: &Learned) -> bool {
    answer.names.iter().filter_map(|name| record.names.get(name)).any(|held| {
        answer.addrs.iter().any(|addr| !held.addresses.iter().any(|a| a.addr == *addr && a.in_answer))
    })
}

/// Records what `learned` teaches and applies it, waiting at most [`LEARN_WAIT`], or
/// [`LEARN_WAIT_BUSY`] while a change is under way.
async fn learn(shared: &Arc<Shared>, pins: &Pins, learned: Vec<Learned>) {
    let wait = match shared.busy.try_lock() {
        Ok(_) if !pins.is_locked() => LEARN_WAIT,
        _ => LEARN_WAIT_BUSY,
    };
    let task = shared.clone();
    let applying = tokio::task::spawn_blocking(move || {
        let _busy = task.busy.lock().unwrap_or_else(PoisonError::into_inner);
        names::settle(&Filter::open(Some(&task.iface))?, Heard::Learned(learned), crate::unix_now())
    });
    // Told once applied, however long that takes: the answers do not wait for it.
    let task = shared.clone();
    let mut told = tokio::spawn(async move {
        match applying.await {
            Ok(Ok((asked, applied))) => {
                task.reloads.dns_names_learned.inc_by(asked.len() as u64);
                tell_names(&task.iface, &asked, applied.as_ref());
            }
            Ok(Err(err)) => eprintln!("firewall serve: learning from DNS answers: {}", crate::one_line(&err)),
            Err(err) => eprintln!("firewall serve: learning from DNS answers: {err}"),
        }
    });
    if tokio::time::timeout(wait, &mut told).await.is_err() && wait == LEARN_WAIT {
        eprintln!(
            "firewall serve: learning from DNS answers: applying took over {}s; the answers went on meanwhile",
            LEARN_WAIT.as_secs()
        );
    }
}
