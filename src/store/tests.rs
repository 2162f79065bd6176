use super::*;

fn tempdir() -> PathBuf {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    std::env::temp_dir().join(format!(
        "vkey-store-test-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn cred(rp: &str, user: &[u8], id: &[u8]) -> Credential {
    Credential {
        id: id.to_vec(),
        rp_id: rp.into(),
        rp_name: None,
        user_id: user.to_vec(),
        user_name: Some("alice".into()),
        user_display_name: None,
        cred_protect: 1,
        discoverable: true,
        private_key: None,
        backup_eligible: None,
        backup_state: None,
        hmac_secret: false,
        large_blob_key: false,
        cred_blob: Vec::new(),
    }
}

fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open(dir, &OpenOptions::default())
}

fn rp_hash(rp: &str) -> [u8; 32] {
    crate::crypto::sha256(rp.as_bytes())
}

fn ids_for(s: &Store, rp: &str) -> Vec<Vec<u8>> {
    s.discoverable_for_rp(&rp_hash(rp))
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[test]
fn serial_and_secrets_are_stable_across_reopen_and_files_are_private() {
    let dir = tempdir();
    let (serial, key) = {
        let s = open(&dir).unwrap();
        (s.serial().to_string(), *s.wrapping_key())
    };
    assert_eq!(serial.len(), 12);
    let s = open(&dir).unwrap();
    assert_eq!(s.serial(), serial);
    assert_eq!(*s.wrapping_key(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [engine::STORE_FILE, "vkey-store.key"] {
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
    let a = open(&dir).unwrap();
    assert!(matches!(
        open(&dir),
        Err(StoreError::Engine(EngineError::Locked(_)))
    ));
    drop(a);
    open(&dir).unwrap();
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
        // A format-2 store that does not decode is not migrated.
        fs::write(dir.join(engine::V2_STORE_FILE), bad).unwrap();
        assert!(
            matches!(open(&dir), Err(StoreError::Corrupt { .. })),
            "{bad:?}"
        );
        assert!(!dir.join(engine::STORE_FILE).exists());
    }
    fs::remove_file(dir.join(engine::V2_STORE_FILE)).unwrap();
    fs::write(dir.join(engine::STORE_FILE), b"garbage").unwrap();
    assert!(matches!(
        open(&dir),
        Err(StoreError::Engine(EngineError::NotAStore(_)))
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn credentials_persist_replace_by_user_and_list_newest_first() {
    let dir = tempdir();
    {
        let mut s = open(&dir).unwrap();
        s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
        s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
        s.put_credential(cred("b.example", b"u1", b"id3")).unwrap();
        // Same RP and user: replaces id1.
        s.put_credential(cred("a.example", b"u1", b"id4")).unwrap();
    }
    let mut s = open(&dir).unwrap();
    assert_eq!(
        ids_for(&s, "a.example"),
        vec![b"id4".to_vec(), b"id2".to_vec()]
    );
    // Sequence numbers go on after a restart: a new credential is the newest.
    s.put_credential(cred("a.example", b"u5", b"id5")).unwrap();
    drop(s);
    let s = open(&dir).unwrap();
    assert_eq!(ids_for(&s, "a.example")[0], b"id5".to_vec());
    assert_eq!(s.discoverable_count(), 4);
    let mut s = s;
    assert!(s.delete_credential(b"id5").unwrap());
    assert_eq!(s.discoverable_count(), 3);
    assert!(s.get_credential(b"id1").is_none());
    let rps: Vec<String> = s.rps().into_iter().map(|r| r.id).collect();
    assert_eq!(
        rps,
        vec!["a.example", "b.example"],
        "in order of first credential"
    );
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counters_persist_and_never_go_back_even_when_the_table_is_full() {
    let dir = tempdir();
    let k: &[u8] = b"credential-id";
    {
        let mut s = open(&dir).unwrap();
        for i in 1..=5 {
            assert_eq!(s.bump_counter(k).unwrap(), i);
        }
    }
    let mut s = open(&dir).unwrap();
    assert_eq!(s.counter(k), 5);
    assert_eq!(s.bump_counter(k).unwrap(), 6);
    drop(s);
    assert_eq!(open(&dir).unwrap().counter(k), 6);
    fs::remove_dir_all(&dir).unwrap();
    // The table holds counter_capacity() counters; beyond, one is dropped and its value
    // becomes the floor every unknown counter starts from.
    let mut s = Store::ephemeral_with(10);
    let cap = counter_capacity(10);
    for _ in 0..100 {
        s.bump_counter(b"hot").unwrap();
    }
    let mut last = std::collections::HashMap::new();
    for i in 0..(cap + 50) as u32 {
        let id = i.to_be_bytes();
        let v = s.bump_counter(&id).unwrap();
        last.insert(id, v);
        assert!(s.records.count(KIND_COUNTER) <= cap);
    }
    assert!(s.counter(b"hot") >= 100);
    assert!(s.bump_counter(b"hot").unwrap() > 100);
    for (id, v) in last {
        assert!(s.counter(&id) >= v, "a counter went back");
        assert!(s.bump_counter(&id).unwrap() > v);
    }
}

#[test]
fn reset_forgets_credentials_counters_and_wrapping_key() {
    let dir = tempdir();
    let mut s = open(&dir).unwrap();
    let serial = s.serial().to_string();
    let key = *s.wrapping_key();
    s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
    s.bump_counter(&[1; 16]).unwrap();
    s.reset().unwrap();
    assert_eq!(s.discoverable_count(), 0);
    assert_eq!(s.counter(&[1; 16]), 0);
    assert_ne!(*s.wrapping_key(), key);
    drop(s);
    let s = open(&dir).unwrap();
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
        let mut s = open(&dir).unwrap();
        s.set_pin(&[1; 16], 4).unwrap();
        for left in [7, 6, 5] {
            assert_eq!(s.record_pin_attempt().unwrap(), left);
        }
        s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
        s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
        assert!(s.delete_credential(b"id1").unwrap());
        assert!(!s.delete_credential(b"id1").unwrap());
        assert!(s.update_user(b"id2", Some("bob".into()), None).unwrap());
    }
    let mut s = open(&dir).unwrap();
    assert_eq!(s.pin_status().retries, 5);
    assert!(s.pin_status().is_set);
    assert!(s.pin_hash_matches(&[1; 16]));
    assert!(!s.pin_hash_matches(&[2; 16]) && !s.pin_hash_matches(&[1; 15]));
    assert_eq!(ids_for(&s, "a.example"), vec![b"id2".to_vec()]);
    let c = s.get_credential(b"id2").unwrap();
    assert_eq!(c.user_name.as_deref(), Some("bob"));
    s.pin_matched().unwrap();
    assert_eq!(s.pin_status().retries, 8);
    s.reset().unwrap();
    assert_eq!(s.pin, PinState::default());
    assert!(!s.pin_hash_matches(&[1; 16]));
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_leaves_memory_as_the_disk_has_it() {
    let dir = tempdir();
    let mut s = open(&dir).unwrap();
    s.put_credential(cred("a.example", b"u1", b"id1")).unwrap();
    s.put_credential(cred("a.example", b"u2", b"id2")).unwrap();
    // Every append fails (as on a full disk) and so does writing a new store file: a
    // directory where its temporary file goes.
    s.fail_writes_after(Some(0));
    let blocker = dir.join(".vkey-store.dat.new");
    fs::create_dir(&blocker).unwrap();
    // Replacing u1's credential fails: id1 is still there, in its place; id3 is not.
    assert!(s.put_credential(cred("a.example", b"u1", b"id3")).is_err());
    assert_eq!(
        ids_for(&s, "a.example"),
        vec![b"id2".to_vec(), b"id1".to_vec()]
    );
    assert!(s.get_credential(b"id3").is_none());
    assert!(s.delete_credential(b"id2").is_err());
    assert!(s.update_user(b"id1", Some("x".into()), None).is_err());
    let c = s.get_credential(b"id1").unwrap();
    assert_eq!(c.user_name.as_deref(), Some("alice"));
    assert!(s.record_pin_attempt().is_err());
    assert_eq!(s.pin_status().retries, 8);
    assert!(s.clear_credentials().is_err());
    assert_eq!(s.discoverable_count(), 2);
    // Once writes work again, the next change lands on top of the unchanged state.
    fs::remove_dir(&blocker).unwrap();
    s.fail_writes_after(None);
    s.put_credential(cred("b.example", b"u3", b"id4")).unwrap();
    drop(s);
    let s = open(&dir).unwrap();
    assert_eq!(
        ids_for(&s, "a.example"),
        vec![b"id2".to_vec(), b"id1".to_vec()]
    );
    assert_eq!(ids_for(&s, "b.example"), vec![b"id4".to_vec()]);
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn large_blob_array_and_credential_extensions_persist_and_reset_clears_the_array() {
    let dir = tempdir();
    {
        let mut s = open(&dir).unwrap();
        assert_eq!(s.large_blob_array(), b"");
        s.set_large_blob_array(vec![0x80; 20]).unwrap();
        let mut c = cred("a.example", b"u1", b"id1");
        c.hmac_secret = true;
        c.large_blob_key = true;
        c.cred_blob = vec![1, 2, 3];
        s.put_credential(c).unwrap();
        // A failed write keeps the old array.
        s.fail_writes_after(Some(0));
        assert!(s.set_large_blob_array(vec![1; 30]).is_err());
        assert_eq!(s.large_blob_array(), &[0x80; 20]);
        s.fail_writes_after(None);
    }
    let mut s = open(&dir).unwrap();
    assert_eq!(s.large_blob_array(), &[0x80; 20]);
    let c = s.get_credential(b"id1").unwrap();
    assert!(c.hmac_secret && c.large_blob_key);
    assert_eq!(c.cred_blob, vec![1, 2, 3]);
    // Clearing the credentials keeps the array; reset does not.
    s.clear_credentials().unwrap();
    assert_eq!(s.large_blob_array(), &[0x80; 20]);
    drop(s);
    let mut s = open(&dir).unwrap();
    assert_eq!(s.large_blob_array(), &[0x80; 20]);
    s.reset().unwrap();
    assert_eq!(s.large_blob_array(), b"");
    drop(s);
    assert_eq!(open(&dir).unwrap().large_blob_array(), b"");
    fs::remove_dir_all(&dir).unwrap();
}

/// A copy of a fixture store directory in a fresh temp dir.
fn copy_fixture(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/store")
        .join(name);
    let dir = tempdir();
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for f in [engine::V2_STORE_FILE, engine::V2_COUNTER_FILE] {
        fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn a_store_written_by_vkey_0_1_0_opens_with_credentials_pin_and_counters() {
    let dir = copy_fixture("v0.1.0");
    let ids: std::collections::HashMap<String, String> = serde_json::from_str(
        &fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store/v0.1.0/ids.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let id = |k: &str| hex::decode(&ids[k]).unwrap();
    let s = open(&dir).unwrap();
    assert_eq!(
        ids_for(&s, "example.com"),
        vec![id("user-2"), id("user-1")],
        "newest first"
    );
    let c = s.get_credential(&id("user-2")).unwrap();
    assert_eq!(c.user_id, b"user-2");
    assert_eq!(c.cred_protect, 2);
    assert!(c.discoverable && c.private_key.is_none());
    assert_eq!(s.rps()[0].name.as_deref(), Some("Example"));
    let status = s.pin_status();
    assert!(status.is_set);
    assert_eq!(status.retries, 7);
    assert!(s.pin_hash_matches(&crate::pin::policy::pin_hash(b"4321abcd")));
    assert_eq!(s.counter(&id("user-1")), 2);
    assert_eq!(s.counter(&id("non-discoverable")), 1);
    assert!(s.get_credential(&id("non-discoverable")).is_none());
    let serial = s.serial().to_string();
    drop(s);
    // Migrated: format 3 in place, the format-2 files (secrets in the clear) gone, and
    // the same state on the next start.
    assert!(dir.join(engine::STORE_FILE).exists());
    assert!(!dir.join(engine::V2_STORE_FILE).exists());
    assert!(!dir.join(engine::V2_COUNTER_FILE).exists());
    let s = open(&dir).unwrap();
    assert_eq!(s.serial(), serial);
    assert_eq!(s.pin_status().retries, 7);
    assert_eq!(s.counter(&id("user-1")), 2);
    assert_eq!(ids_for(&s, "example.com"), vec![id("user-2"), id("user-1")]);
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn imported_credentials_keep_their_key_and_only_discoverable_ones_are_listed() {
    let dir = tempdir();
    let key = PrivateKey {
        algorithm: crate::crypto::Algorithm::EdDsa,
        secret: Zeroizing::new([5; 32]),
    };
    {
        let mut s = open(&dir).unwrap();
        let mut plain = cred("a.example", b"u1", b"chosen-by-the-caller");
        plain.discoverable = false;
        plain.private_key = Some(key.clone());
        s.put_credential(plain).unwrap();
        // Same user, discoverable: a non-discoverable credential is not replaced.
        s.put_credential(cred("a.example", b"u1", b"id2")).unwrap();
        assert_eq!(s.discoverable_count(), 1);
        assert_eq!(s.remaining_capacity(), DEFAULT_MAX_CREDENTIALS - 2);
    }
    let mut s = open(&dir).unwrap();
    let c = s.get_credential(b"chosen-by-the-caller").unwrap();
    assert!(!c.discoverable);
    let k = c.private_key.unwrap();
    assert_eq!((k.algorithm, *k.secret), (key.algorithm, *key.secret));
    assert_eq!(ids_for(&s, "a.example"), vec![b"id2".to_vec()]);
    assert_eq!(s.rps().len(), 1);
    // Putting the same ID again replaces it.
    s.put_credential(cred("a.example", b"u9", b"chosen-by-the-caller"))
        .unwrap();
    assert_eq!(
        ids_for(&s, "a.example"),
        vec![b"chosen-by-the-caller".to_vec(), b"id2".to_vec()]
    );
    s.clear_credentials().unwrap();
    assert_eq!(s.discoverable_count(), 0);
    assert!(s.rps().is_empty());
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pin_and_uv_operations_persist() {
    let dir = tempdir();
    {
        let mut s = open(&dir).unwrap();
        assert!(
            !s.set_min_pin_length(6, Some(vec!["a.example".into()]), false)
                .unwrap()
        );
        s.set_pin(&[3; 16], 4).unwrap();
        // The 4-character PIN is now shorter than a new minimum of 8: a change is forced.
        assert!(s.set_min_pin_length(8, None, false).unwrap());
        assert!(s.toggle_always_uv().unwrap());
        assert_eq!(s.record_uv_failure().unwrap(), 7);
        s.set_uv_retries(3).unwrap();
    }
    let mut s = open(&dir).unwrap();
    let p = s.pin_status();
    assert!(p.is_set && p.force_change && p.always_uv);
    assert_eq!((p.min_pin_length, p.uv_retries), (8, 3));
    assert_eq!(s.min_pin_length_for("a.example"), Some(8));
    assert_eq!(s.min_pin_length_for("b.example"), None);
    s.uv_matched().unwrap();
    s.set_pin(&[4; 16], 9).unwrap();
    assert!(!s.pin_status().force_change);
    assert_eq!(s.pin_status().uv_retries, 8);
    drop(s);
    fs::remove_dir_all(&dir).unwrap();
}
