//! Crash safety: a child process writes through the storage API from
//! several tasks and is killed with SIGKILL at a random moment; after a
//! restart every acknowledged event is present exactly once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cxdb_model::Event;
use cxdb_storage::{Storage, WriteOptions};
use rand::Rng;

use crate::common::*;

const CHILD_ENV: &str = "CXDB_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "CXDB_CRASH_CHILD_ROUND";

/// The child: writes forever from 4 tasks and prints `ack <ids…>` for each
/// acknowledged write. Does nothing when not started by the parent.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_ENV), std::env::var(ROUND_ENV)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async move {
        let mut c = config(std::path::Path::new(&dir));
        // Persist often, so kills also land in persists and compactions.
        c.background = true;
        c.persist_rows = 300;
        c.background_tick = Duration::from_millis(5);
        c.maintenance_interval = Duration::from_millis(50);
        c.compaction_min_files = 3;
        c.wal_segment_bytes = 64 << 10;
        let s = Storage::open(c).await.unwrap_or_else(|e| panic!("{e}"));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = s.clone();
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let size = 1 + (n as usize * 7 + w) % 20;
                    let events: Vec<Event> = (0..size)
                        .map(|i| {
                            let id = format!("r{round}-w{w}-{n}-{i}");
                            message("acme", &id, DAY0 + (n as i64 % 3) * DAY + i as i64)
                        })
                        .collect();
                    let ids: Vec<String> = ids(&events);
                    match s.write(events, WriteOptions::default()).await {
                        Ok(o) if o.accepted == size => {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ack {}", ids.join(" "));
                            let _ = out.flush();
                        }
                        other => panic!("write failed: {other:?}"),
                    }
                    n += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut acked: HashSet<String> = HashSet::new();
    let mut rng = rand::rng();
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let kill_after = rng.random_range(50..600);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acks = 0;
        while acks < kill_after {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("child stopped acknowledging after {acks} writes: {e}"));
            if let Some(ids) = line.strip_prefix("ack ") {
                acked.extend(ids.split(' ').map(str::to_string));
                acks += 1;
            }
        }
        child.kill().unwrap_or_else(|e| panic!("{e}")); // SIGKILL
        let _ = child.wait();
        // Acks the child printed before it died count too.
        let _ = reader.join();
        for line in rx.try_iter() {
            if let Some(ids) = line.strip_prefix("ack ") {
                acked.extend(ids.split(' ').map(str::to_string));
            }
        }

        let s = open(dir.path()).await;
        let seen = all_ids(&s).await;
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| !seen.contains_key(&("acme".to_string(), id.to_string())))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged events lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: events stored twice: {twice:?}"
        );
        // Re-sending acknowledged events after the crash is a no-op.
        let resend: Vec<Event> = acked
            .iter()
            .take(50)
            .map(|id| message("acme", id, DAY0))
            .collect();
        let n = resend.len();
        let out = s
            .write(resend, WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((out.accepted, out.duplicates.len()), (0, n));
        s.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} events",
        acked.len()
    );
}
