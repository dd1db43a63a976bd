//! The terminal side of `watch`: the screen (raw mode, the alternate screen, the cursor
//! hidden, all undone on every way out), the drawing, and the loop of snapshots and keys.
use std::{
    io::{self, IsTerminal as _, Stdout},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table, Wrap},
};

use super::{Row, columns, conntrack_text, fit, parse_interval, rows};
use crate::{
    kernel::{Filter, pins::Pins},
    ops::LiveError,
    view::snapshot::Snapshot,
};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch needs a terminal; use `firewall list -v` or `serve --metrics` for scripts")]
    NotATerminal,
    #[error("--interval {0:?}: give a number of seconds from 0.1 to 3600")]
    BadInterval(String),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("{call}")]
    Terminal { call: &'static str, source: io::Error },
}

fn terminal_err(call: &'static str) -> impl FnOnce(io::Error) -> WatchError {
    move |source| WatchError::Terminal { call, source }
}

/// What one frame shows.
pub struct View {
    pub iface: String,
    /// The policy file in force, as `up` or `reload` recorded it.
    pub policy_file: String,
    /// The time of the latest snapshot, `HH:MM:SS UTC`.
    pub clock: String,
    pub interval: Duration,
    pub state: State,
}

pub enum State {
    Live {
        rows: Vec<Row>,
        conntrack: String,
        /// A line for each peer written as a DNS name (`view::names::line`), under the
        /// conntrack line.
        names: Vec<String>,
    },
    /// The latest snapshot failed (the filter went down, the interface vanished): the
    /// error, one line. The view keeps trying at every interval.
    Failed(String),
}

/// Draws `view` on the whole frame: title, conntrack, the table, the footer.
pub fn draw(frame: &mut Frame, view: &View) {
    let status_lines = match &view.state {
        State::Live { names, .. } => 1 + names.len() as u16,
        State::Failed(_) => 1,
    };
    let [title, status, table, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(status_lines),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    // The policy file last: a long path is what gets cut.
    let heading = format!(
        "firewall watch on {}  {}  every {:?}  policy {}",
        view.iface, view.clock, view.interval, view.policy_file
    );
    frame.render_widget(Paragraph::new(heading).style(Style::new().add_modifier(Modifier::BOLD)), title);
    frame.render_widget(Paragraph::new("q quit").style(Style::new().add_modifier(Modifier::DIM)), footer);
    let (rows, conntrack) = match &view.state {
        State::Failed(error) => {
            // Where the conntrack line and the table were, wrapped: errors name paths.
            let area = status.union(table);
            let text =
                Paragraph::new(error.as_str()).style(Style::new().fg(Color::Red)).wrap(Wrap { trim: true });
            frame.render_widget(text, area);
            return;
        }
        State::Live { rows, conntrack, names } => (rows, (conntrack, names)),
    };
    let (conntrack, names) = conntrack;
    let status_text: Vec<Line> =
        std::iter::once(conntrack.as_str()).chain(names.iter().map(String::as_str)).map(Line::from).collect();
    frame.render_widget(Paragraph::new(status_text), status);
    let columns = columns(table.width, rows);
    let cell = |text: String, number: bool| {
        let line = Line::from(text);
        Cell::from(if number { line.right_aligned() } else { line })
    };
    let header = TableRow::new(
        columns.iter().map(|c| cell(fit(c.field.header(), c.width), c.field.is_number())).collect::<Vec<_>>(),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body = rows.iter().map(|row| {
        let cells: Vec<Cell> =
            columns.iter().map(|c| cell(fit(&c.field.text(row), c.width), c.field.is_number())).collect();
        // Idle lines dimmed, so the busy ones stand out.
        let idle = row.packets_per_sec == 0.0 && row.bytes_per_sec == 0.0;
        TableRow::new(cells).style(if idle { Style::new().add_modifier(Modifier::DIM) } else { Style::new() })
    });
    let widths: Vec<Constraint> = columns.iter().map(|c| Constraint::Length(c.width)).collect();
    frame.render_widget(Table::new(body, widths).header(header).column_spacing(1), table);
}

/// `HH:MM:SS UTC` of `time`.
fn clock(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Puts the terminal back as the shell had it: raw mode off, the alternate screen left,
/// the cursor shown. Idempotent, and errors are ignored: it runs on the way out, when
/// there is nobody left to tell.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

/// The terminal in raw mode on the alternate screen, for as long as this lives; a panic
/// restores it too, before its message is printed.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen, WatchError> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        enable_raw_mode().map_err(terminal_err("enabling raw mode"))?;
        let entered = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .map_err(terminal_err("entering the alternate screen"))
            .and_then(|()| {
                Terminal::new(CrosstermBackend::new(io::stdout()))
                    .map_err(terminal_err("opening the terminal"))
            });
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                restore();
                Err(err)
            }
        }
    }

    fn draw(&mut self, view: &View) -> Result<(), WatchError> {
        self.terminal.draw(|frame| draw(frame, view)).map_err(terminal_err("drawing"))?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process, so that the
/// loop ends and the terminal is restored (in raw mode Ctrl-C is a key, not SIGINT, but
/// `kill` still sends signals). Unregistered on drop.
struct Signals {
    raised: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    fn register() -> Result<Signals, WatchError> {
        let raised = Arc::new(AtomicBool::new(false));
        let mut signals = Signals { raised: raised.clone(), ids: Vec::new() };
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP]
        {
            let id = signal_hook::flag::register(signal, raised.clone())
                .map_err(terminal_err("installing a signal handler"))?;
            signals.ids.push(id);
        }
        Ok(signals)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

enum Wake {
    /// Time for the next snapshot.
    Tick,
    /// The terminal changed size.
    Redraw,
    Quit,
}

/// Waits for `deadline`, a key or a signal, whichever comes first.
fn wait(deadline: Instant, signals: &Signals) -> Result<Wake, WatchError> {
    // Signals are noticed within this long.
    const SLICE: Duration = Duration::from_millis(100);
    loop {
        if signals.raised.load(Ordering::Relaxed) {
            return Ok(Wake::Quit);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Wake::Tick);
        }
        if !event::poll((deadline - now).min(SLICE)).map_err(terminal_err("reading the keyboard"))? {
            continue;
        }
        match event::read().map_err(terminal_err("reading the keyboard"))? {
            Event::Key(key) if key.kind == KeyEventKind::Press => match key.code {
                KeyCode::Char('q' | 'Q') | KeyCode::Esc => return Ok(Wake::Quit),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(Wake::Quit),
                _ => {}
            },
            Event::Resize(..) => return Ok(Wake::Redraw),
            _ => {}
        }
    }
}

/// One reading of the filter on `iface`: checked to be up, on an interface that still
/// exists, as every live command checks.
fn take(iface: &str) -> Result<Snapshot, LiveError> {
    let filter = Filter::open(Some(iface))?;
    filter.check_interface()?;
    Snapshot::take(filter.pins())
}

/// The view of `snapshot` against the one before it, or of the error that took its place.
fn view(
    pins: &Pins,
    interval: Duration,
    taken: &Result<Snapshot, LiveError>,
    previous: Option<&Snapshot>,
) -> View {
    let state = match taken {
        Ok(snapshot) => State::Live {
            rows: rows(previous, snapshot),
            conntrack: conntrack_text(&snapshot.established, &snapshot.half_open),
            names: snapshot.names.iter().map(crate::view::names::line).collect(),
        },
        Err(err) => State::Failed(format!("firewall: {err}; trying again every {interval:?}")),
    };
    View {
        iface: pins.iface.clone(),
        policy_file: pins.live_state().map_or_else(|_| "?".into(), |s| s.policy_file.display().to_string()),
        clock: clock(SystemTime::now()),
        interval,
        state,
    }
}

/// `--interval SECONDS`, checked.
pub fn interval(text: &str) -> Result<Duration, WatchError> {
    parse_interval(text).ok_or_else(|| WatchError::BadInterval(text.into()))
}

/// `firewall watch [--iface IF] [--interval SECONDS]`: returns when the user quits (q,
/// Esc, Ctrl-C, or a signal), with the terminal as it was. Bad arguments, no root, no
/// terminal or no filter up fail before the screen changes; once watching, a failed
/// snapshot is shown in the view and tried again.
pub fn run(filter: &Filter, interval: Duration) -> Result<(), WatchError> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(WatchError::NotATerminal);
    }
    filter.check_interface().map_err(LiveError::from)?;
    let pins = filter.pins().clone();
    let mut latest = Ok(Snapshot::take(&pins)?);
    let signals = Signals::register()?;
    let mut screen = Screen::enter()?;
    let mut current = view(&pins, interval, &latest, None);
    let mut deadline = Instant::now() + interval;
    loop {
        screen.draw(&current)?;
        match wait(deadline, &signals)? {
            Wake::Quit => return Ok(()),
            Wake::Redraw => continue,
            Wake::Tick => {}
        }
        let taken = take(&pins.iface);
        // After a failure there is nothing to take rates against: the counters may have
        // started again from zero (`down`, `up`).
        current = view(&pins, interval, &taken, latest.as_ref().ok());
        latest = taken;
        // The next tick an interval after this one, or after now when the snapshot took
        // longer than that.
        deadline = (deadline + interval).max(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use firewall_common::Chain;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::{
        compile::Ids,
        kernel::maps::TableStats,
        watch::tests::{POLICY, snapshot},
    };

    fn screen_text(view: &View, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, view)).unwrap();
        let buffer = terminal.backend().buffer();
        buffer
            .content
            .chunks(usize::from(width))
            .map(|line| line.iter().map(|c| c.symbol()).collect::<String>().trim_end().to_string())
            .collect()
    }

    fn live_view() -> View {
        let t0 = Instant::now();
        let (before, ids) = snapshot(POLICY, &Ids::default(), t0, &[]);
        let (after, _) = snapshot(
            POLICY,
            &ids,
            t0 + Duration::from_secs(1),
            &[("web-in", Chain::Input, 1_500, 2_250_000), ("ping-in", Chain::Output, 20, 1_680)],
        );
        View {
            iface: "eth0".into(),
            policy_file: "/etc/firewall/eth0.toml".into(),
            clock: "09:41:07 UTC".into(),
            interval: Duration::from_secs(1),
            state: State::Live {
                rows: rows(Some(&before), &after),
                conntrack: conntrack_text(
                    &TableStats { entries: 1_234, capacity: 65_536, evicted: 0 },
                    &TableStats { entries: 12, capacity: 16_384, evicted: 3 },
                ),
                names: Vec::new(),
            },
        }
    }

    #[test]
    fn the_view_fits_an_80_by_24_terminal() {
        let text = screen_text(&live_view(), 80, 24);
        let all = text.join("\n");
        assert_eq!(
            text[0], "firewall watch on eth0  09:41:07 UTC  every 1s  policy /etc/firewall/eth0.toml",
            "{all}"
        );
        assert_eq!(
            text[1], "conntrack 1,234 / 65,536 (1.9%)  half-open 12 / 16,384  evicted 0, half-open 3",
            "{all}"
        );
        let header: Vec<&str> = text[2].split_whitespace().collect();
        assert_eq!(
            header,
            ["pkts/s", "bytes/s", "pkts", "bytes", "chain", "target", "rule", "source"],
            "{all}"
        );
        let first: Vec<&str> = text[3].split_whitespace().collect();
        assert_eq!(
            first,
            ["1500", "2250K", "1500", "2250K", "INPUT", "ACCEPT", "web-in", "0.0.0.0/0"],
            "{all}"
        );
        let second: Vec<&str> = text[4].split_whitespace().collect();
        assert_eq!(second[..7], ["20.0", "1680", "20", "1680", "OUTPUT", "ACCEPT", "ping-in"], "{all}");
        // Then the idle lines, as many as fit: 24 rows less title, conntrack, header, footer.
        assert!(text[5].split_whitespace().next() == Some("0"), "{all}");
        assert_eq!(text[23], "q quit", "{all}");
        assert!(text[22].starts_with(char::is_whitespace), "the table fills the screen:\n{all}");
    }

    #[test]
    fn each_name_has_a_line_under_the_conntrack_line() {
        let mut view = live_view();
        let line = "name deb.debian.org (rule repos): 151.101.2.132 for 2h; TTL 300s, answered 12s ago";
        if let State::Live { names, .. } = &mut view.state {
            names.push(line.into());
        }
        let text = screen_text(&view, 100, 24);
        let all = text.join("\n");
        assert_eq!(text[2], line, "{all}");
        let header: Vec<&str> = text[3].split_whitespace().collect();
        assert_eq!(header[..3], ["pkts/s", "bytes/s", "pkts"], "the table starts below it:\n{all}");
    }

    #[test]
    fn a_wide_terminal_shows_destination_and_match() {
        let text = screen_text(&live_view(), 160, 40);
        let all = text.join("\n");
        let header: Vec<&str> = text[2].split_whitespace().collect();
        assert_eq!(header[6..], ["rule", "source", "destination", "match"], "{all}");
        assert!(text[3].contains("198.51.100.1") && text[3].contains("tcp multiport dports 80,443"), "{all}");
    }

    #[test]
    fn a_failed_snapshot_shows_its_error_wrapped() {
        let mut view = live_view();
        let error = "firewall: interface \"eth0\" is gone; `firewall down --iface eth0` removes what its filter left pinned; trying again every 1s";
        view.state = State::Failed(error.into());
        let text = screen_text(&view, 80, 24);
        let all = text.join("\n");
        assert!(text[1].starts_with("firewall: interface \"eth0\" is gone;"), "{all}");
        assert_eq!(text[1..4].join(" ").trim(), error, "{all}");
        assert!(!all.contains("pkts/s"), "{all}");
        assert_eq!(text[23], "q quit", "{all}");
    }

    #[test]
    fn the_clock_is_utc() {
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 9 * 3600 + 41 * 60 + 7)),
            "09:41:07 UTC"
        );
    }
}
