//! Commit, reopen, crash recovery and concurrency.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use cxdb_catalog::{Catalog, Error, PendingDelete, manifest_file_name};

use crate::{TestResult, calendar, file, policy};

/// Every file in `dir` with its contents, for "nothing changed on disk" checks.
fn dir_state(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, std::io::Error> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            fs::read(e.path())?,
        );
    }
    Ok(out)
}

#[test]
fn catalog_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Catalog>();
}

#[test]
fn empty_dir_opens_as_version_zero_and_is_created() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data/catalog");
    let cat = Catalog::open(&dir)?;
    assert_eq!(cat.snapshot().version, 0);
    assert!(cat.snapshot().files.is_empty());
    assert!(dir.is_dir());
    Ok(())
}

#[test]
fn commit_and_reopen_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Catalog::open(tmp.path())?;
    let (m1, n) = cat.commit(|m| {
        m.files.push(file("acme", 1));
        m.files.push(file("globex", 2));
        m.wal_persisted_through = 17;
        Ok(m.files.len())
    })?;
    assert_eq!((m1.version, n), (1, 2));
    let (m2, ()) = cat.commit(|m| {
        m.upsert_calendar(calendar("acme", "support")?)?;
        m.upsert_sla_policy(policy("acme", "p1", Some("support")))?;
        m.upsert_sla_policy(policy("acme", "p2", None))?;
        m.retention_days.insert("acme".into(), 400);
        m.pending_deletes.push(PendingDelete {
            path: "events/old.parquet".into(),
            since: 5,
        });
        Ok(())
    })?;
    assert_eq!(m2.version, 2);
    // The earlier snapshot is immutable.
    assert_eq!(m1.calendars.len(), 0);
    assert_eq!(cat.snapshot(), m2);

    let reopened = Catalog::open(tmp.path())?.snapshot();
    assert_eq!(*reopened, *m2);
    assert_eq!(
        reopened
            .files_of("acme")
            .map(|f| f.rows)
            .collect::<Vec<_>>(),
        vec![101]
    );
    assert_eq!(reopened.wal_persisted_through, 17);
    assert_eq!(reopened.calendar("acme", "support"), m2.calendars.first());
    assert_eq!(reopened.calendar("globex", "support"), None);
    assert_eq!(reopened.retention_days.get("acme"), Some(&400));

    // Holidays are stored as ISO dates, weekly hours in their JSON form.
    let text = fs::read_to_string(tmp.path().join(manifest_file_name(2)))?;
    assert!(text.contains(r#""holidays":["2026-12-25"]"#), "{text}");
    assert!(
        text.contains(r#""fri":[["09:00","12:00"],["22:00","06:00"]]"#),
        "{text}"
    );
    Ok(())
}

#[test]
fn old_versions_are_pruned_to_the_newest_three() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Catalog::open(tmp.path())?;
    for n in 0..5 {
        cat.commit(|m| {
            m.files.push(file("acme", n));
            Ok(())
        })?;
    }
    let names: Vec<String> = dir_state(tmp.path())?.into_keys().collect();
    assert_eq!(names, (3..=5).map(manifest_file_name).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn crash_leftovers_fall_back_to_last_good_version() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Catalog::open(tmp.path())?;
    for n in 0..2 {
        cat.commit(|m| {
            m.files.push(file("acme", n));
            Ok(())
        })?;
    }
    let good = cat.snapshot();
    drop(cat);

    // A torn version 3 (as if written without the tmp+rename protocol) and a stray tmp.
    let v2 = fs::read(tmp.path().join(manifest_file_name(2)))?;
    fs::write(tmp.path().join(manifest_file_name(3)), &v2[..v2.len() / 2])?;
    let stray = tmp.path().join(format!("{}.tmp", manifest_file_name(4)));
    fs::write(&stray, b"{\"version\":4")?;

    let cat = Catalog::open(tmp.path())?;
    assert_eq!(cat.snapshot(), good);
    assert!(!stray.exists(), "leftover .tmp not removed");
    // The next commit takes the torn file's number and overwrites it.
    let (m3, ()) = cat.commit(|m| {
        m.wal_persisted_through = 9;
        Ok(())
    })?;
    assert_eq!(m3.version, 3);
    assert_eq!(Catalog::open(tmp.path())?.snapshot(), m3);

    // A single bit flip in the newest version: the previous one is used.
    let newest = tmp.path().join(manifest_file_name(3));
    let mut bytes = fs::read(&newest)?;
    let at = bytes.len() / 3;
    bytes[at] ^= 0x04;
    fs::write(&newest, bytes)?;
    assert_eq!(Catalog::open(tmp.path())?.snapshot(), good);
    Ok(())
}

#[test]
fn no_valid_version_is_corrupt() -> TestResult {
    let tmp = tempfile::tempdir()?;
    fs::write(tmp.path().join(manifest_file_name(1)), b"{\"version\":1}\n")?;
    match Catalog::open(tmp.path()) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn failed_closure_changes_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Catalog::open(tmp.path())?;
    cat.commit(|m| {
        m.files.push(file("acme", 1));
        Ok(())
    })?;
    let before = (cat.snapshot(), dir_state(tmp.path())?);

    let r: Result<_, Error> = cat.commit(|m| {
        m.files.clear();
        m.upsert_sla_policy(policy("acme", "p1", Some("missing")))
    });
    assert!(matches!(r, Err(Error::Invalid(_))));
    assert_eq!((cat.snapshot(), dir_state(tmp.path())?), before);
    assert_eq!(Catalog::open(tmp.path())?.snapshot(), before.0);
    Ok(())
}

#[test]
fn failed_write_changes_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Catalog::open(tmp.path())?;
    cat.commit(|m| {
        m.files.push(file("acme", 1));
        Ok(())
    })?;
    let before = cat.snapshot();
    // A directory where the next commit's temporary file must go makes the write fail
    // (works even when the tests run as root, unlike permission tricks).
    let blocker = tmp.path().join(format!("{}.tmp", manifest_file_name(2)));
    fs::create_dir(&blocker)?;
    let r = cat.commit(|m| {
        m.files.clear();
        Ok(())
    });
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_eq!(cat.snapshot(), before);
    assert!(!tmp.path().join(manifest_file_name(2)).exists());

    fs::remove_dir(&blocker)?;
    let (m2, ()) = cat.commit(|m| {
        m.files.clear();
        Ok(())
    })?;
    assert_eq!((m2.version, m2.files.len()), (2, 0));
    Ok(())
}

#[test]
fn concurrent_commits_are_serialized() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cat = Arc::new(Catalog::open(tmp.path())?);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|n| {
                let cat = Arc::clone(&cat);
                s.spawn(move || {
                    cat.commit(|m| {
                        m.files.push(file("acme", n));
                        Ok(())
                    })
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => assert!(r.is_ok(), "{r:?}"),
                Err(_) => panic!("commit thread panicked"),
            }
        }
    });
    let check = |m: &cxdb_catalog::Manifest| {
        let mut rows: Vec<u64> = m.files.iter().map(|f| f.rows).collect();
        rows.sort_unstable();
        assert_eq!(m.version, 8);
        assert_eq!(rows, (100..108).collect::<Vec<_>>());
    };
    check(&cat.snapshot());
    check(&Catalog::open(tmp.path())?.snapshot());
    Ok(())
}

#[test]
fn manifest_missing_optional_fields_still_loads() -> TestResult {
    // A manifest written before fields existed: only `version` is required.
    let tmp = tempfile::tempdir()?;
    let body = br#"{"version":5,"some_future_field":true}"#;
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(format!("\ncrc32 {:08x}\n", crc32fast::hash(body)).as_bytes());
    fs::write(tmp.path().join(manifest_file_name(5)), bytes)?;
    let m = Catalog::open(tmp.path())?.snapshot();
    assert_eq!(
        (m.version, m.files.len(), m.wal_persisted_through),
        (5, 0, 0)
    );
    Ok(())
}
