//! Keyed records, on disk (the [`Engine`]) or in memory (`--ephemeral`), behind one
//! interface, so the domain API above is written once. Both keep the same semantics:
//! records by kind and key, an optional 32-byte group per record whose members are
//! listed in the order they were first put (an overwrite keeps its place), and commits
//! that apply all their changes or none.

use std::collections::HashMap;

use zeroize::Zeroizing;

use super::engine::{Change, Engine, EngineError, Entry, Stats};

/// A record in memory: its group and value.
type MemRecord = (Option<[u8; 32]>, Zeroizing<Vec<u8>>);

/// Records in memory, for a store that is gone when the process ends.
#[derive(Default)]
pub(super) struct MemRecords {
    map: HashMap<(u8, Vec<u8>), MemRecord>,
    groups: HashMap<(u8, [u8; 32]), Vec<Vec<u8>>>,
    counts: HashMap<u8, usize>,
}

impl MemRecords {
    fn remove_from_group(&mut self, kind: u8, group: [u8; 32], key: &[u8]) {
        if let Some(m) = self.groups.get_mut(&(kind, group)) {
            m.retain(|k| k != key);
            if m.is_empty() {
                self.groups.remove(&(kind, group));
            }
        }
    }

    fn apply(&mut self, c: &Change<'_>) {
        match *c {
            Change::Put {
                kind,
                key,
                group,
                value,
            } => {
                let old = self.map.insert(
                    (kind, key.to_vec()),
                    (group, Zeroizing::new(value.to_vec())),
                );
                match old {
                    Some((old_group, _)) if old_group == group => {}
                    Some((old_group, _)) => {
                        if let Some(g) = old_group {
                            self.remove_from_group(kind, g, key);
                        }
                        if let Some(g) = group {
                            self.groups.entry((kind, g)).or_default().push(key.to_vec());
                        }
                    }
                    None => {
                        *self.counts.entry(kind).or_default() += 1;
                        if let Some(g) = group {
                            self.groups.entry((kind, g)).or_default().push(key.to_vec());
                        }
                    }
                }
            }
            Change::Delete { kind, key } => {
                if let Some((group, _)) = self.map.remove(&(kind, key.to_vec())) {
                    if let Some(g) = group {
                        self.remove_from_group(kind, g, key);
                    }
                    if let Some(n) = self.counts.get_mut(&kind) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
    }
}

pub(super) enum Records {
    Disk(Box<Engine>),
    Memory(MemRecords),
}

impl Records {
    pub fn get(&self, kind: u8, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, EngineError> {
        match self {
            Records::Disk(e) => e.get(kind, key),
            Records::Memory(m) => Ok(m.map.get(&(kind, key.to_vec())).map(|(_, v)| v.clone())),
        }
    }

    pub fn contains(&self, kind: u8, key: &[u8]) -> bool {
        match self {
            Records::Disk(e) => e.contains(kind, key),
            Records::Memory(m) => m.map.contains_key(&(kind, key.to_vec())),
        }
    }

    pub fn count(&self, kind: u8) -> usize {
        match self {
            Records::Disk(e) => e.count(kind),
            Records::Memory(m) => m.counts.get(&kind).copied().unwrap_or(0),
        }
    }

    /// Some key of `kind`, if there is one (which one is unspecified).
    pub fn any_key(&self, kind: u8) -> Option<Vec<u8>> {
        match self {
            Records::Disk(e) => e.keys(kind).next().map(<[u8]>::to_vec),
            Records::Memory(m) => m
                .map
                .keys()
                .find(|(k, _)| *k == kind)
                .map(|(_, k)| k.clone()),
        }
    }

    /// Every record (key, value) of `kind`.
    pub fn entries(&self, kind: u8) -> Result<Vec<Entry>, EngineError> {
        match self {
            Records::Disk(e) => e.entries(kind),
            Records::Memory(m) => Ok(m
                .map
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, key), (_, v))| (key.clone(), v.clone()))
                .collect()),
        }
    }

    pub fn groups(&self, kind: u8) -> Vec<[u8; 32]> {
        match self {
            Records::Disk(e) => e.groups(kind).copied().collect(),
            Records::Memory(m) => m
                .groups
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, g)| *g)
                .collect(),
        }
    }

    pub fn group_at(
        &self,
        kind: u8,
        group: &[u8; 32],
        i: usize,
    ) -> Result<Option<Entry>, EngineError> {
        match self {
            Records::Disk(e) => e.group_at(kind, group, i),
            Records::Memory(m) => Ok(m
                .groups
                .get(&(kind, *group))
                .and_then(|ms| ms.get(i))
                .and_then(|key| {
                    m.map
                        .get(&(kind, key.clone()))
                        .map(|(_, v)| (key.clone(), v.clone()))
                })),
        }
    }

    /// The members of a group, in the order they were first put.
    pub fn group(&self, kind: u8, group: &[u8; 32]) -> Result<Vec<Entry>, EngineError> {
        match self {
            Records::Disk(e) => e.group(kind, group),
            Records::Memory(m) => Ok(m
                .groups
                .get(&(kind, *group))
                .map_or(&[][..], |ms| &ms[..])
                .iter()
                .filter_map(|key| {
                    m.map
                        .get(&(kind, key.clone()))
                        .map(|(_, v)| (key.clone(), v.clone()))
                })
                .collect()),
        }
    }

    /// All of `changes` or none, durable on disk when this returns `Ok`.
    pub fn commit(&mut self, changes: &[Change<'_>]) -> Result<(), EngineError> {
        match self {
            Records::Disk(e) => e.commit(changes),
            Records::Memory(m) => {
                for c in changes {
                    m.apply(c);
                }
                Ok(())
            }
        }
    }

    /// Replaces everything with `puts`, atomically.
    pub fn replace_all(&mut self, puts: &[Change<'_>]) -> Result<(), EngineError> {
        match self {
            Records::Disk(e) => e.replace_all(puts),
            Records::Memory(m) => {
                *m = MemRecords::default();
                for c in puts {
                    m.apply(c);
                }
                Ok(())
            }
        }
    }

    pub fn engine(&self) -> Option<&Engine> {
        match self {
            Records::Disk(e) => Some(e),
            Records::Memory(_) => None,
        }
    }

    pub fn stats(&self) -> Option<Stats> {
        self.engine().map(Engine::stats)
    }
}
