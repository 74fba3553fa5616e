//! Typed events from the engine and its stages, and their displayers: indicatif bars (or plain
//! lines when stderr is not a terminal) and JSON lines. Progress and logs go to stderr; results
//! go to stdout and to files.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        stages: usize,
        variant: Option<String>,
    },
    StageCached {
        stage: String,
        key: String,
    },
    StageStarted {
        stage: String,
        key: String,
    },
    /// Its result came from a remote instead of being computed (`run --pull`, `pull`).
    StagePulled {
        stage: String,
        key: String,
        remote: String,
        /// The key whose signature verified (`name:base64`), if the record was signed.
        signer: Option<String>,
    },
    StageProgress {
        stage: String,
        done: u64,
        total: u64,
        unit: String,
    },
    StageLog {
        stage: String,
        msg: String,
    },
    StageFinished {
        stage: String,
        key: String,
        seconds: f64,
        summary: String,
    },
    StageFailed {
        stage: String,
        error: String,
    },
    StageSkipped {
        stage: String,
        because: String,
    },
    RunFinished {
        ran: usize,
        cached: usize,
        pulled: usize,
        failed: usize,
        skipped: usize,
        seconds: f64,
    },
}

pub trait Sink: Sync {
    fn emit(&self, e: Event);
}

/// JSON lines on stderr (`--log-format json`).
pub struct JsonSink;

impl Sink for JsonSink {
    fn emit(&self, e: Event) {
        let line = serde_json::to_string(&e).expect("event serialises");
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// Human display: a bar per running stage and an overall `n/m stages` bar on a terminal; plain
/// lines otherwise (CI logs, pipes).
pub struct HumanSink {
    multi: Option<MultiProgress>,
    total: Mutex<Option<ProgressBar>>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// Without a terminal: when each running stage last had a progress line.
    said: Mutex<HashMap<String, std::time::Instant>>,
    quiet: bool,
}

/// Without a terminal (a pipe, a CI log, a Slurm job's output), a running stage's progress is a
/// line at its first report and then at most every this often, so a long epoch is never minutes
/// of silence (a training also logs a line per epoch).
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(30);

impl HumanSink {
    pub fn new(quiet: bool) -> HumanSink {
        let tty = std::io::stderr().is_terminal() && !quiet;
        HumanSink {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            total: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
            said: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{s}");
            }
        }
    }

    fn tick_total(&self) {
        if let Some(t) = self.total.lock().expect("bar lock").as_ref() {
            t.inc(1);
        }
    }

    fn end_bar(&self, stage: &str) {
        self.said.lock().expect("progress lock").remove(stage);
        if let Some(b) = self.bars.lock().expect("bar lock").remove(stage) {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&b);
            }
        }
    }
}

impl Sink for HumanSink {
    fn emit(&self, e: Event) {
        match e {
            Event::RunStarted { stages, variant } => {
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new(stages as u64));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>8} {pos}/{len} stages {wide_msg}")
                            .expect("template"),
                    );
                    bar.set_prefix("run");
                    if let Some(v) = variant {
                        bar.set_message(format!("variant {v}"));
                    }
                    *self.total.lock().expect("bar lock") = Some(bar);
                }
            }
            Event::StageCached { stage, key } => {
                self.line(&format!("  cached  {stage} ({})", &key[..12]));
                self.tick_total();
            }
            Event::StagePulled {
                stage,
                key,
                remote,
                signer,
            } => {
                let by = signer
                    .as_deref()
                    .map(|s| format!(", signed by {}", s.split(':').next().unwrap_or(s)))
                    .unwrap_or_default();
                self.line(&format!(
                    "  pulled  {stage} ({}) from {remote}{by}",
                    &key[..12]
                ));
                self.tick_total();
            }
            Event::StageStarted { stage, key } => {
                if let Some(m) = &self.multi {
                    let b = m.insert_from_back(1, ProgressBar::new(0));
                    // No bar until the stage reports how far it is: an empty one is drawn full,
                    // as `0/0`.
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>8} {spinner} [{elapsed_precise}] {msg}",
                        )
                        .expect("template"),
                    );
                    b.set_prefix(stage.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    self.bars.lock().expect("bar lock").insert(stage, b);
                } else {
                    self.line(&format!("  running {stage} ({})", &key[..12]));
                }
            }
            Event::StageProgress {
                stage,
                done,
                total,
                unit,
            } => {
                if let Some(b) = self.bars.lock().expect("bar lock").get(&stage) {
                    if b.length() == Some(0) {
                        b.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>8} {spinner} [{elapsed_precise}] {bar:30} {pos}/{len} (eta {eta}) {msg}",
                            )
                            .expect("template"),
                        );
                    }
                    b.set_length(total);
                    b.set_position(done);
                    b.set_message(unit);
                } else if self.multi.is_none() {
                    let now = std::time::Instant::now();
                    let mut said = self.said.lock().expect("progress lock");
                    let due = said
                        .get(&stage)
                        .is_none_or(|t| now.duration_since(*t) >= PLAIN_PROGRESS_EVERY);
                    if due {
                        said.insert(stage.clone(), now);
                        drop(said);
                        self.line(&format!("  {stage}: {done}/{total} {unit}"));
                    }
                }
            }
            Event::StageLog { stage, msg } => self.line(&format!("  {stage}: {msg}")),
            Event::StageFinished {
                stage,
                seconds,
                summary,
                ..
            } => {
                self.end_bar(&stage);
                self.line(&format!("  ran     {stage} in {seconds:.2}s: {summary}"));
                self.tick_total();
            }
            Event::StageFailed { stage, error } => {
                self.end_bar(&stage);
                self.line(&format!("  FAILED  {stage}: {error}"));
                self.tick_total();
            }
            Event::StageSkipped { stage, because } => {
                self.line(&format!("  skipped {stage}: {because}"));
                self.tick_total();
            }
            Event::RunFinished {
                ran,
                cached,
                pulled,
                failed,
                skipped,
                seconds,
            } => {
                if let Some(t) = self.total.lock().expect("bar lock").take() {
                    t.finish_and_clear();
                }
                let mut s = format!("{ran} ran, {cached} cached");
                if pulled > 0 {
                    s.push_str(&format!(", {pulled} pulled"));
                }
                if failed > 0 {
                    s.push_str(&format!(", {failed} failed"));
                }
                if skipped > 0 {
                    s.push_str(&format!(", {skipped} skipped"));
                }
                self.line(&format!("{s} in {seconds:.2}s"));
            }
        }
    }
}
