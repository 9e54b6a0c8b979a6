//! The live terminal view: a scrape thread looks at the agent once an interval and hands each
//! look over a bounded channel; the view redraws when a look arrives or the terminal is
//! resized, and quits on `q`, `Esc` or `Ctrl-C`.
//!
//! The scrape thread is separate so that a slow or unreachable agent (each request may wait
//! its 3 s timeout) never freezes the keys: `q` always quits at once. When the view quits, the
//! thread's next send fails and it ends; a process exit ends it if it is waiting on a socket.

use super::figures::{Figures, Flow, OUTCOMES};
use super::plain;
use super::scrape::{self, Endpoint, Snapshot};
use super::{Error, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::{DefaultTerminal, Frame};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

/// Rates kept for the sparklines: wider than any terminal needs.
const HISTORY: usize = 300;

/// How long the view waits for a key before looking for a new look.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// What the scrape thread hands over: a look at the agent, or why there was none.
type Look = std::result::Result<Snapshot, String>;

/// Shows the agent at `endpoint` until the user quits.
pub fn run(url: &str, endpoint: Endpoint, interval: Duration) -> Result<()> {
    // Two looks in flight at most: the thread waits rather than piling them up.
    let (looks, arrivals) = sync_channel::<Look>(2);
    std::thread::Builder::new()
        .name("top-scrape".into())
        .spawn(move || scrape_loop(&endpoint, interval, &looks))
        .map_err(Error::Terminal)?;
    let mut terminal = ratatui::try_init().map_err(Error::Terminal)?;
    let shown = show(&mut terminal, Watch::new(url), &arrivals);
    // The terminal is given back even when drawing failed.
    let restored = ratatui::try_restore().map_err(Error::Terminal);
    shown.and(restored)
}

fn scrape_loop(endpoint: &Endpoint, interval: Duration, looks: &SyncSender<Look>) {
    let mut next = Instant::now();
    loop {
        let look = scrape::snapshot(endpoint).map_err(|e| e.to_string());
        if looks.send(look).is_err() {
            return;
        }
        next += interval;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            // A look took longer than the interval: start again from now, no burst.
            None => next = now,
        }
    }
}

fn show(terminal: &mut DefaultTerminal, mut watch: Watch, arrivals: &Receiver<Look>) -> Result<()> {
    let mut redraw = true;
    loop {
        loop {
            match arrivals.try_recv() {
                Ok(look) => {
                    watch.take(look);
                    redraw = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    watch.error = Some("the scrape thread stopped".into());
                    break;
                }
            }
        }
        if redraw {
            terminal
                .draw(|frame| draw(frame, &watch))
                .map_err(Error::Terminal)?;
            redraw = false;
        }
        if event::poll(KEY_WAIT).map_err(Error::Terminal)? {
            match event::read().map_err(Error::Terminal)? {
                Event::Key(key) if key.kind == KeyEventKind::Press && quits(&key) => return Ok(()),
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
    }
}

fn quits(key: &KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// What the view knows: the last look, the figures since the one before, and the rates seen.
struct Watch {
    url: String,
    last: Option<Snapshot>,
    figures: Option<Figures>,
    /// Why the latest look failed; cleared by the next one that works.
    error: Option<String>,
    /// Since when looks fail: the figures on screen are that old.
    failing_since: Option<Instant>,
    /// Rates per look: lines in, then documents by outcome ([`OUTCOMES`] order).
    history: [VecDeque<f64>; 5],
}

impl Watch {
    fn new(url: &str) -> Watch {
        Watch {
            url: url.to_owned(),
            last: None,
            figures: None,
            error: None,
            failing_since: None,
            history: Default::default(),
        }
    }

    fn take(&mut self, look: Look) {
        let snapshot = match look {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(e);
                self.failing_since.get_or_insert_with(Instant::now);
                return;
            }
        };
        self.error = None;
        self.failing_since = None;
        if let Some(before) = &self.last {
            let f = Figures::between(before, &snapshot);
            let rates = std::iter::once(f.lines_in).chain(f.documents);
            for (h, flow) in self.history.iter_mut().zip(rates) {
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(flow.per_second);
            }
            self.figures = Some(f);
        }
        self.last = Some(snapshot);
    }
}

fn draw(frame: &mut Frame, watch: &Watch) {
    let [header, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(watch)), header);
    let Some(f) = &watch.figures else {
        let text = if watch.error.is_some() {
            "cannot reach the agent; trying again every second"
        } else {
            "looking at the agent (rates need two looks, a second apart)…"
        };
        frame.render_widget(Paragraph::new(text).block(Block::bordered()), body);
        return;
    };
    let checks = f.health.as_ref().map_or(1, |h| h.checks.len()) as u16;
    let routes = if f.routes.is_empty() {
        0
    } else {
        f.routes.len() as u16 + 3
    };
    let top_height = (checks + 2).max(6);
    // Two rows a flow when the terminal has them (taller sparklines), else one: 80x24 fits.
    let flow_rows = if body.height >= top_height + 2 * 5 + 2 + 4 + routes {
        2
    } else {
        1
    };
    let [top, flows, buffer, rest] = Layout::vertical([
        Constraint::Length(top_height),
        Constraint::Length(flow_rows * 5 + 2),
        Constraint::Length(4),
        Constraint::Length(routes),
    ])
    .areas(body);
    let [health, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(36)]).areas(top);
    draw_health(frame, health, f);
    draw_latency_and_process(frame, side, f);
    draw_flows(frame, flows, f, &watch.history, flow_rows);
    draw_buffer(frame, buffer, f);
    if routes > 0 {
        draw_routes(frame, rest, f);
    }
}

fn header_line(watch: &Watch) -> Line<'_> {
    let mut spans = vec![
        Span::styled("logferry top ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(watch.url.as_str()),
    ];
    match (&watch.error, watch.figures.as_ref().map(|f| &f.health)) {
        // A stale "healthy" beside an agent that does not answer would be a lie.
        (Some(e), _) => {
            let since = watch.failing_since.map_or(0, |t| t.elapsed().as_secs());
            spans.push(Span::styled(
                format!("  no answer for {since}s (the figures below are older): {e}"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        (None, health) => {
            if let Some(Ok(h)) = health {
                spans.push(Span::raw("  health "));
                spans.push(Span::styled(h.status.clone(), level_style(&h.status)));
            }
            spans.push(Span::styled("  q quits", Style::new().fg(Color::DarkGray)));
        }
    }
    Line::from(spans)
}

fn level_style(status: &str) -> Style {
    match status {
        "healthy" => Style::new().fg(Color::Green),
        "degraded" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn draw_health(frame: &mut Frame, area: Rect, f: &Figures) {
    let block = Block::bordered().title(" health ");
    let health = match &f.health {
        Ok(h) => h,
        Err(e) => {
            let text = Paragraph::new(format!("unknown: {e}")).style(Style::new().fg(Color::Red));
            frame.render_widget(text.block(block), area);
            return;
        }
    };
    let rows = health.checks.iter().map(|(name, status, detail)| {
        Row::new([
            Span::raw(name.as_str()),
            Span::styled(status.as_str(), level_style(status)),
            Span::raw(detail.as_str()),
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    frame.render_widget(Table::new(rows, widths).block(block), area);
}

fn draw_latency_and_process(frame: &mut Frame, area: Rect, f: &Figures) {
    let lines = vec![
        Line::from(format!(
            "bulk p50 {}  p99 {}",
            plain::latency(f.bulk_p50),
            plain::latency(f.bulk_p99)
        )),
        Line::from(format!(
            "requests {}  backoff {}",
            plain::rate(f.bulk_per_second),
            plain::backoff(f)
        )),
        Line::from(""),
        Line::from(format!(
            "cpu {:.1}%  rss {}",
            f.cpu_cores * 100.0,
            plain::bytes(f.rss_bytes)
        )),
    ];
    let block = Block::bordered().title(" latency · process ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_flows(
    frame: &mut Frame,
    area: Rect,
    f: &Figures,
    history: &[VecDeque<f64>; 5],
    rows_each: u16,
) {
    let block = Block::bordered().title(" lines in · documents out ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let names = std::iter::once("lines in").chain(OUTCOMES.iter().map(|o| plain::outcome_name(o)));
    let flows = std::iter::once(&f.lines_in).chain(&f.documents);
    let rows = Layout::vertical([Constraint::Length(rows_each); 5]).split(inner);
    for (((name, flow), h), row) in names.zip(flows).zip(history).zip(rows.iter()) {
        let [text, spark] =
            Layout::horizontal([Constraint::Length(46), Constraint::Min(0)]).areas(*row);
        frame.render_widget(Paragraph::new(flow_text(name, flow)), text);
        frame.render_widget(sparkline(h, spark.width, name), spark);
    }
}

fn flow_text(name: &str, flow: &Flow) -> String {
    format!(
        "{name:<14}{:>10}   total {}",
        plain::rate(flow.per_second),
        flow.total as u64
    )
}

/// The latest rates that fit `width`, oldest on the left. Any rate above zero shows as at
/// least the lowest bar: one dead letter a minute must not look like none.
fn sparkline<'a>(history: &VecDeque<f64>, width: u16, name: &str) -> Sparkline<'a> {
    let skip = history.len().saturating_sub(usize::from(width));
    let data: Vec<u64> = history.iter().skip(skip).map(|r| r.ceil() as u64).collect();
    let color = match name {
        "retried" => Color::Yellow,
        "dead-lettered" => Color::Red,
        _ => Color::Cyan,
    };
    Sparkline::default()
        .data(data)
        .style(Style::new().fg(color))
}

fn draw_buffer(frame: &mut Frame, area: Rect, f: &Figures) {
    let block = Block::bordered().title(" buffer · lag ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge, facts] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
    let fill = plain::fill(f);
    let color = if fill >= 0.8 {
        Color::Red
    } else {
        Color::Green
    };
    let label = format!(
        "{} of {} ({:.1}%)",
        plain::bytes(f.buffer_bytes),
        plain::bytes(f.buffer_max_bytes),
        fill * 100.0
    );
    let gauge_widget = Gauge::default()
        .ratio(fill)
        .label(label)
        .gauge_style(Style::new().fg(color));
    frame.render_widget(gauge_widget, gauge);
    let text = format!(
        "records {}   oldest {}   lag {}",
        f.buffer_records as u64,
        plain::oldest(f),
        plain::bytes(f.lag_bytes)
    );
    frame.render_widget(Paragraph::new(text), facts);
}

fn draw_routes(frame: &mut Frame, area: Rect, f: &Figures) {
    let rows = f.routes.iter().map(|(name, flow)| {
        Row::new([
            name.clone(),
            plain::rate(flow.per_second),
            (flow.total as u64).to_string(),
        ])
    });
    let widths = [
        Constraint::Length(24),
        Constraint::Length(12),
        Constraint::Length(14),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(["route", "records", "total"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" routes "));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::scrape::{Health, parse_metrics};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn look(at: Instant, indexed: u64) -> Look {
        let text = format!(
            "logferry_input_lines_total {indexed}\n\
             logferry_documents_total{{outcome=\"indexed\"}} {indexed}\n\
             logferry_documents_total{{outcome=\"dead_lettered\"}} 3\n\
             logferry_buffer_bytes 1048576\nlogferry_buffer_max_bytes 4194304\n\
             logferry_buffer_records 12\nlogferry_buffer_oldest_record_age_seconds 75\n"
        );
        let check = |n: &str| (n.to_owned(), "healthy".to_owned(), "ok".to_owned());
        Ok(Snapshot {
            at,
            metrics: parse_metrics(&text).unwrap(),
            health: Ok(Health {
                status: "healthy".into(),
                checks: ["buffer", "elasticsearch", "kubernetes", "setup", "tailer"]
                    .map(check)
                    .to_vec(),
            }),
        })
    }

    fn screen(watch: &Watch, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, watch)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn an_80_by_24_terminal_shows_every_pane() {
        let t = Instant::now();
        let mut watch = Watch::new("http://127.0.0.1:2020");
        watch.take(look(t, 100));
        watch.take(look(t + Duration::from_secs(2), 300));
        let s = screen(&watch, 80, 24);
        assert!(s.contains("health healthy"), "{s}");
        assert!(s.contains("tailer"), "{s}");
        assert!(s.contains("indexed          100.0/s   total 300"), "{s}");
        assert!(s.contains("dead-lettered        0/s   total 3"), "{s}");
        assert!(s.contains("1.0 MiB of 4.0 MiB (25.0%)"), "{s}");
        assert!(s.contains("records 12   oldest 1m 15s"), "{s}");
    }

    #[test]
    fn an_agent_that_stops_answering_is_not_shown_as_healthy() {
        let t = Instant::now();
        let mut watch = Watch::new("http://127.0.0.1:2020");
        watch.take(look(t, 100));
        watch.take(look(t + Duration::from_secs(1), 200));
        watch.take(Err("cannot connect to 127.0.0.1:2020: refused".into()));
        let s = screen(&watch, 160, 50);
        let header = s.lines().next().unwrap_or_default();
        assert!(header.contains("no answer for 0s"), "{s}");
        assert!(!header.contains("healthy"), "{s}");
        // The last figures stay, for comparison.
        assert!(s.contains("total 200"), "{s}");
    }
}
