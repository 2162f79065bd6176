use super::*;

fn tempdir() -> PathBuf {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    std::env::temp_dir().join(format!(
        "vkey-store-test-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn cred(rp: &str, user: &[u8], id: &[u8]) -> StoredCredential {
    StoredCredential {
        id: id.to_vec(),
        rp_id: rp.into(),
        rp_name: None,
        user_id: user.to_vec(),
        user_name: Some("alice".into()),
        user_display_name: None,
        created: 0,
        cred_protect: 1,
    }
}

#[test]
fn serial_and_secrets_are_stable_across_reopen_and_files_are_private() {
    let dir = tempdir();
    let (serial, key) = {
        let s = Store::open(&dir).unwrap();
        (s.serial().to_string(), *s.wrapping_key())
    };
    assert_eq!(serial.len(), 12);
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.serial(), serial);
    assert_eq!(*s.wrapping_key(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [STORE_FILE, COUNTER_FILE] {
            assert_eq!(
                fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn second_open_is_refused_while_locked() {
    let dir = tempdir();
    let a = Store::open(&dir).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::Locked(_))));
    drop(a);
    Store::open(&dir).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_file_is_an_error_not_a_panic() {
    let dir = tempdir();
    fs::create_dir_all(&dir).unwrap();
    for bad in [
        &b"garbage"[..],
        &[0xa0],
        &[0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02],
        &[],
    ] {
        fs::write(dir.join(STORE_FILE), bad).unwrap();
        assert!(
            matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })),
            "{bad:?}"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn credentials_persist_replace_by_user_and_list_newest_first() {
    let dir = tempdir();
    {
        let mut s = Store::open(&dir).unwrap();
        s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
        s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
        s.put_credential(cred("b.example", b"u1", b"id3")).unwrap();
        // Same RP and user: replaces id1.
        s.put_credential(cred("a.example", b"u1", b"id4")).unwrap();
    }
    let s = Store::open(&dir).unwrap();
    let ids: Vec<&[u8]> = s
        .discoverable("a.example")
        .iter()
        .map(|c| c.id.as_slice())
        .collect();
    assert_eq!(ids, vec![&b"id4"[..], b"id2"]);
    assert_eq!(s.discoverable_count(), 3);
    assert!(s.credential(b"id1").is_none());
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counters_persist_never_go_back_and_survive_a_torn_record() {
    let dir = tempdir();
    let k = [9u8; 16];
    {
        let mut s = Store::open(&dir).unwrap();
        for i in 1..=5 {
            assert_eq!(s.bump_counter(&k).unwrap(), i);
        }
    }
    // A crash mid-append leaves a partial record.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join(COUNTER_FILE))
        .unwrap();
    f.write_all(&[9u8; 7]).unwrap();
    drop(f);
    let mut s = Store::open(&dir).unwrap();
    assert_eq!(s.counter(&k), 5);
    assert_eq!(s.bump_counter(&k).unwrap(), 6);
    drop(s);
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.counter(&k), 6);
    assert_eq!(
        fs::metadata(dir.join(COUNTER_FILE)).unwrap().len() % COUNTER_RECORD as u64,
        0
    );
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reset_forgets_credentials_counters_and_wrapping_key() {
    let dir = tempdir();
    let mut s = Store::open(&dir).unwrap();
    let serial = s.serial().to_string();
    let key = *s.wrapping_key();
    s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
    s.bump_counter(&[1; 16]).unwrap();
    s.reset().unwrap();
    assert_eq!(s.discoverable_count(), 0);
    assert_eq!(s.counter(&[1; 16]), 0);
    assert_ne!(*s.wrapping_key(), key);
    drop(s);
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.discoverable_count(), 0);
    assert_eq!(s.counter(&[1; 16]), 0);
    assert_eq!(s.serial(), serial);
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pin_state_delete_and_update_persist_and_reset_clears_pin() {
    let dir = tempdir();
    {
        let mut s = Store::open(&dir).unwrap();
        s.update_pin(|p| {
            p.hash = Some(vec![1; 16]);
            p.retries = 5;
        })
        .unwrap();
        s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
        s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
        assert!(s.delete_credential(b"id1").unwrap());
        assert!(!s.delete_credential(b"id1").unwrap());
        assert!(s.update_user(b"id2", Some("bob".into()), None).unwrap());
    }
    let mut s = Store::open(&dir).unwrap();
    assert_eq!(s.pin().retries, 5);
    assert_eq!(s.pin().hash.as_deref(), Some(&[1u8; 16][..]));
    assert_eq!(s.all_credentials().len(), 1);
    assert_eq!(s.all_credentials()[0].user_name.as_deref(), Some("bob"));
    s.reset().unwrap();
    assert_eq!(s.pin(), &PinState::default());
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_leaves_memory_as_the_disk_has_it() {
    let dir = tempdir();
    let mut s = Store::open(&dir).unwrap();
    s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
    s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
    // A directory where the atomic write puts its temp file: every commit fails (even
    // for root, which file modes would not stop).
    let blocker = dir.join(format!(".{STORE_FILE}.tmp"));
    fs::create_dir(&blocker).unwrap();
    // Replacing u1's credential fails: id1 is still there, in its place; id3 is not.
    assert!(s.put_credential(cred("a.example", b"u1", b"id3")).is_err());
    let ids: Vec<&[u8]> = s
        .all_credentials()
        .iter()
        .map(|c| c.id.as_slice())
        .collect();
    assert_eq!(ids, vec![&b"id1"[..], b"id2"]);
    assert!(s.delete_credential(b"id2").is_err());
    assert!(s.update_user(b"id1", Some("x".into()), None).is_err());
    assert_eq!(s.all_credentials()[0].user_name.as_deref(), Some("alice"));
    assert!(s.update_pin(|p| p.retries = 1).is_err());
    assert_eq!(s.pin().retries, 8);
    // Once writes work again, the next change lands on top of the unchanged state.
    fs::remove_dir(&blocker).unwrap();
    s.put_credential(cred("b.example", b"u3", b"id4")).unwrap();
    drop(s);
    let s = Store::open(&dir).unwrap();
    let mut ids: Vec<Vec<u8>> = s.all_credentials().iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![b"id1".to_vec(), b"id2".to_vec(), b"id4".to_vec()]);
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}
