//! The stable-Rust driver behind every fuzz target's `#[test]`: replay the corpus, then a
//! fixed number of inputs mutated from it with a seeded RNG, and report any panic with the
//! input that caused it.
//!
//! Deterministic on purpose: CI must fail the same way on every run and on every machine, so
//! the seed is fixed (override it with `FUZZ_SEED` to explore further) and nothing depends on
//! the clock. Inputs are mostly mutations of the corpus because random bytes almost never get
//! past the first length or magic byte of a structured format; the mutations are the usual
//! havoc set of coverage-guided fuzzers (bit flips, interesting values, block insert, delete,
//! copy and splice, dictionary tokens), without the coverage feedback.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Generated inputs per target when `FUZZ_ITERATIONS` is not set.
pub const DEFAULT_ITERATIONS: usize = 10_000;

/// The RNG seed when `FUZZ_SEED` is not set; each target mixes its name into it.
pub const DEFAULT_SEED: u64 = 0x004c_774d_3246_555a;

/// Distinct panic locations collected before a run gives up.
const MAX_CRASHES: usize = 8;

/// Attempts the minimizer makes on one crashing input.
const MINIMIZE_BUDGET: usize = 4_000;

/// One fuzz target: a function over arbitrary bytes that must not panic.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name, also the corpus directory under `corpus/` and the libFuzzer binary.
    pub name: &'static str,
    /// Runs one input. Panics (including failed assertions) are the findings.
    pub run: fn(&[u8]),
    /// Tokens the mutator inserts: keywords and delimiters of the format, in lists.
    pub dict: &'static [&'static [&'static [u8]]],
    /// Longest input generated.
    pub max_len: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// How long and from where a run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Generated inputs after the corpus (`FUZZ_ITERATIONS`).
    pub iterations: usize,
    /// RNG seed (`FUZZ_SEED`, decimal or `0x` hex).
    pub seed: u64,
    /// Where minimized crashing inputs are written (`FUZZ_CRASH_DIR`, default
    /// `$TMPDIR/fuzz-crashes`), never the corpus, so a finding does not turn the suite red
    /// for everyone before its owner has fixed it.
    pub crash_dir: PathBuf,
}

impl Settings {
    /// The defaults, overridden by the `FUZZ_*` environment variables.
    pub fn from_env() -> Self {
        let number = |name: &str| {
            let v = std::env::var(name).ok()?;
            let v = v.trim().replace('_', "");
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        };
        Settings {
            iterations: number("FUZZ_ITERATIONS")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(DEFAULT_ITERATIONS),
            seed: number("FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            crash_dir: std::env::var_os("FUZZ_CRASH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("fuzz-crashes")),
        }
    }
}

/// A panic found by a run.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The smallest input found that panics at the same place.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: String,
    /// Where the input was written, if it could be.
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Corpus files replayed.
    pub corpus_inputs: usize,
    /// Inputs generated.
    pub generated: usize,
    /// Distinct panics, by location.
    pub crashes: Vec<Crash>,
    /// Wall time.
    pub elapsed: Duration,
}

/// The seed corpus directory of target `name`.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// The corpus files of `name`, in file name order (dot files skipped).
pub fn load_corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(corpus_dir(name)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            Some((name, std::fs::read(e.path()).ok()?))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` with settings from the environment and panics with a report of every crash
/// found: the body of each target's `#[test]`.
pub fn check(target: &Target) {
    if let Some(file) = std::env::var_os("FUZZ_INPUT") {
        let input = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("FUZZ_INPUT {}: {e}", PathBuf::from(&file).display()));
        (target.run)(&input);
        return;
    }
    let settings = Settings::from_env();
    let report = fuzz(target, &settings);
    println!(
        "{}: {} corpus + {} generated inputs (seed {:#x}) in {:.2?}, {} crash(es)",
        target.name,
        report.corpus_inputs,
        report.generated,
        settings.seed,
        report.elapsed,
        report.crashes.len()
    );
    if !report.crashes.is_empty() {
        let mut text = format!("fuzz target {} panicked:\n", target.name);
        for c in &report.crashes {
            let _ = writeln!(
                text,
                "- at {}: {}\n  input ({} bytes): {}\n  saved to: {}",
                c.location,
                c.message,
                c.input.len(),
                hex(&c.input),
                c.file
                    .as_ref()
                    .map_or("(not saved)".into(), |p| p.display().to_string()),
            );
        }
        panic!("{text}");
    }
}

/// Runs `target` over its corpus and `settings.iterations` generated inputs.
pub fn fuzz(target: &Target, settings: &Settings) -> Report {
    install_panic_hook();
    let start = Instant::now();
    let corpus: Vec<Vec<u8>> = load_corpus(target.name)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let mut report = Report {
        corpus_inputs: corpus.len(),
        ..Report::default()
    };
    let mut seen = Vec::<String>::new();
    let mut on_input = |input: &[u8], report: &mut Report| {
        let Err((message, location)) = run_one(target.run, input) else {
            return;
        };
        if seen.contains(&location) || report.crashes.len() >= MAX_CRASHES {
            return;
        }
        seen.push(location.clone());
        let input = minimize(target.run, input.to_vec(), &location);
        let file = save_crash(&settings.crash_dir, target.name, &input);
        report.crashes.push(Crash {
            input,
            message,
            location,
            file,
        });
    };
    for input in &corpus {
        on_input(input, &mut report);
    }
    let mut rng = StdRng::seed_from_u64(settings.seed ^ fnv1a(target.name.as_bytes()));
    let mut mutator = Mutator {
        rng: &mut rng,
        corpus: &corpus,
        dict: target.dict,
        max_len: target.max_len.max(1),
    };
    for _ in 0..settings.iterations {
        let input = mutator.generate();
        on_input(&input, &mut report);
        report.generated += 1;
    }
    report.elapsed = start.elapsed();
    report
}

thread_local! {
    /// Set while this thread runs an input: the panic hook records into it instead of printing.
    static CAPTURE: RefCell<Option<Option<(String, String)>>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records the message and location of panics
/// raised while an input runs, and leaves every other panic to the default hook.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                            (*s).to_string()
                        } else if let Some(s) = info.payload().downcast_ref::<String>() {
                            s.clone()
                        } else {
                            "(non-string panic payload)".to_string()
                        };
                        let location = info
                            .location()
                            .map_or("(unknown)".into(), |l| l.to_string());
                        *slot = Some((message, location));
                        true
                    }
                    None => false,
                }
            });
            if !captured {
                default(info);
            }
        }));
    });
}

/// Runs one input; a panic becomes `(message, location)`.
fn run_one(run: fn(&[u8]), input: &[u8]) -> Result<(), (String, String)> {
    CAPTURE.with(|c| *c.borrow_mut() = Some(None));
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(input)));
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).flatten();
    match result {
        Ok(()) => Ok(()),
        Err(_) => Err(captured.unwrap_or_else(|| ("(no message)".into(), "(unknown)".into()))),
    }
}

/// Shrinks a crashing input by deleting ever smaller blocks while it still panics at the
/// same location, so the report shows the bytes that matter.
fn minimize(run: fn(&[u8]), mut best: Vec<u8>, location: &str) -> Vec<u8> {
    let mut budget = MINIMIZE_BUDGET;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.len() && budget > 0 {
            budget -= 1;
            let end = (i + chunk).min(best.len());
            let mut candidate = Vec::with_capacity(best.len());
            candidate.extend_from_slice(best.get(..i).unwrap_or_default());
            candidate.extend_from_slice(best.get(end..).unwrap_or_default());
            match run_one(run, &candidate) {
                Err((_, loc)) if loc == location => best = candidate,
                _ => i += chunk,
            }
        }
        if chunk == 1 || budget == 0 {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// Writes a crashing input as `<dir>/<target>/crash-<hash>`.
fn save_crash(dir: &Path, target: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("crash-{:016x}", fnv1a(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// FNV-1a, to derive per-target seeds and crash file names reproducibly.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Values that sit on boundaries of length fields and counters.
const INTERESTING_8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0x64];
const INTERESTING_16: [u16; 8] = [0, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0xffff];
const INTERESTING_32: [u32; 6] = [0, 0xffff, 0x1_0000, 0x00ff_ffff, 0x7fff_ffff, 0xffff_ffff];

/// Text tokens every target gets: numbers at the edges of integer and float ranges.
const NUMBERS: [&[u8]; 14] = [
    b"0",
    b"-1",
    b"-0",
    b"65535",
    b"65536",
    b"2147483648",
    b"4294967296",
    b"9223372036854775808",
    b"18446744073709551616",
    b"1e19",
    b"1e400",
    b"-1e-400",
    b"NaN",
    b"inf",
];

struct Mutator<'a> {
    rng: &'a mut StdRng,
    corpus: &'a [Vec<u8>],
    dict: &'a [&'a [&'a [u8]]],
    max_len: usize,
}

impl Mutator<'_> {
    fn generate(&mut self) -> Vec<u8> {
        let random = if self.corpus.is_empty() {
            self.rng.random_bool(0.5)
        } else {
            self.rng.random_ratio(1, 16)
        };
        if random {
            let len = if self.rng.random_bool(0.8) {
                self.rng.random_range(0..=64.min(self.max_len))
            } else {
                self.rng.random_range(0..=self.max_len)
            };
            let mut v = vec![0u8; len];
            self.rng.fill(&mut v[..]);
            return v;
        }
        let mut v = self.pick().to_vec();
        let rounds = 1 << self.rng.random_range(0..4);
        for _ in 0..rounds {
            self.mutate(&mut v);
        }
        v.truncate(self.max_len);
        v
    }

    fn pick(&mut self) -> &[u8] {
        if self.corpus.is_empty() {
            return &[];
        }
        let i = self.rng.random_range(0..self.corpus.len());
        self.corpus.get(i).map_or(&[], Vec::as_slice)
    }

    fn token(&mut self) -> Vec<u8> {
        let n = self.dict.iter().map(|d| d.len()).sum::<usize>() + NUMBERS.len();
        let mut i = self.rng.random_range(0..n);
        for list in self.dict.iter().copied().chain([&NUMBERS[..]]) {
            match list.get(i) {
                Some(t) => return t.to_vec(),
                None => i -= list.len(),
            }
        }
        Vec::new()
    }

    fn pos(&mut self, len: usize) -> usize {
        self.rng.random_range(0..=len)
    }

    /// A block `(start, len)` inside `v` (which must not be empty), mostly short.
    fn block(&mut self, len: usize) -> (usize, usize) {
        let max = if self.rng.random_bool(0.8) {
            len.min(16)
        } else {
            len
        };
        let n = self.rng.random_range(1..=max.max(1));
        let start = self.rng.random_range(0..=len - n.min(len));
        (start, n.min(len - start))
    }

    fn mutate(&mut self, v: &mut Vec<u8>) {
        let op = self.rng.random_range(0..14);
        if v.is_empty() && op < 9 {
            let t = self.token();
            v.extend_from_slice(&t);
            return;
        }
        let len = v.len();
        match op {
            0 => {
                let i = self.rng.random_range(0..len);
                let bit = self.rng.random_range(0..8);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << bit;
                }
            }
            1 => {
                let i = self.rng.random_range(0..len);
                let x = self.rng.random();
                if let Some(b) = v.get_mut(i) {
                    *b = x;
                }
            }
            2 => {
                let i = self.rng.random_range(0..len);
                let x = INTERESTING_8[self.rng.random_range(0..INTERESTING_8.len())];
                if let Some(b) = v.get_mut(i) {
                    *b = x;
                }
            }
            3 => {
                let i = self.rng.random_range(0..len);
                let delta: i8 = self.rng.random_range(-16..=16);
                if let Some(b) = v.get_mut(i) {
                    *b = b.wrapping_add_signed(delta);
                }
            }
            4 => {
                let bytes: Vec<u8> = if self.rng.random_bool(0.5) {
                    let x = INTERESTING_16[self.rng.random_range(0..INTERESTING_16.len())];
                    if self.rng.random_bool(0.5) {
                        x.to_be_bytes().to_vec()
                    } else {
                        x.to_le_bytes().to_vec()
                    }
                } else {
                    let x = INTERESTING_32[self.rng.random_range(0..INTERESTING_32.len())];
                    if self.rng.random_bool(0.5) {
                        x.to_be_bytes().to_vec()
                    } else {
                        x.to_le_bytes().to_vec()
                    }
                };
                let i = self.rng.random_range(0..len);
                for (dst, src) in v.iter_mut().skip(i).zip(bytes) {
                    *dst = src;
                }
            }
            5 => {
                let (start, n) = self.block(len);
                v.drain(start..start + n);
            }
            6 => {
                let (start, n) = self.block(len);
                let copy = v.get(start..start + n).unwrap_or_default().to_vec();
                let at = self.pos(len);
                v.splice(at..at, copy);
            }
            7 => {
                let (start, n) = self.block(len);
                let copy = v.get(start..start + n).unwrap_or_default().to_vec();
                let at = self.rng.random_range(0..len);
                for (dst, src) in v.iter_mut().skip(at).zip(copy) {
                    *dst = src;
                }
            }
            8 => {
                let cut = self.rng.random_range(0..len);
                v.truncate(cut);
            }
            9 => {
                let n = self.rng.random_range(1..=16);
                let mut bytes = vec![0u8; n];
                self.rng.fill(&mut bytes[..]);
                let at = self.pos(len);
                v.splice(at..at, bytes);
            }
            10 | 11 => {
                let t = self.token();
                let at = self.pos(len);
                if op == 10 || at == len {
                    v.splice(at..at, t);
                } else {
                    let end = (at + t.len()).min(len);
                    v.splice(at..end, t);
                }
            }
            12 => {
                // Splice: our head, another corpus entry's tail.
                let other = self.pick().to_vec();
                let at = self.pos(len);
                let from = self.rng.random_range(0..=other.len());
                v.truncate(at);
                v.extend_from_slice(other.get(from..).unwrap_or_default());
            }
            _ => {
                // Repeat a block many times: long lists, deep nesting, big counts.
                let (start, n) = self.block(len);
                let copy = v.get(start..start + n).unwrap_or_default().to_vec();
                let times = self.rng.random_range(2..=64);
                let at = self.pos(len);
                let rep: Vec<u8> = copy.iter().copied().cycle().take(n * times).collect();
                v.splice(at..at, rep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_magic(data: &[u8]) {
        if data.windows(3).any(|w| w == b"BUG") {
            panic!("found the bug");
        }
    }

    const MAGIC: Target = Target {
        name: "harness-self-test",
        run: panics_on_magic,
        dict: &[&[b"BUG"]],
        max_len: 64,
    };

    #[test]
    fn finds_minimizes_and_saves_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            iterations: 2_000,
            seed: 1,
            crash_dir: dir.path().to_path_buf(),
        };
        let report = fuzz(&MAGIC, &settings);
        assert_eq!(report.generated, 2_000);
        assert_eq!(report.crashes.len(), 1, "{report:?}");
        let crash = &report.crashes[0];
        assert_eq!(crash.input, b"BUG");
        assert_eq!(crash.message, "found the bug");
        assert!(crash.location.contains("harness.rs"), "{}", crash.location);
        let saved = std::fs::read(crash.file.as_ref().unwrap()).unwrap();
        assert_eq!(saved, b"BUG");
    }

    #[test]
    fn runs_are_reproducible() {
        let settings = Settings {
            iterations: 200,
            seed: 7,
            crash_dir: std::env::temp_dir(),
        };
        let inputs = |settings: &Settings| {
            let corpus = vec![b"hello world".to_vec(), vec![0, 1, 2, 3]];
            let mut rng = StdRng::seed_from_u64(settings.seed);
            let mut m = Mutator {
                rng: &mut rng,
                corpus: &corpus,
                dict: &[&[b"<", b">"]],
                max_len: 100,
            };
            (0..settings.iterations)
                .map(|_| m.generate())
                .collect::<Vec<_>>()
        };
        let a = inputs(&settings);
        assert_eq!(a, inputs(&settings));
        assert!(a.iter().all(|i| i.len() <= 100));
    }
}
