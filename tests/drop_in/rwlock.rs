use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct Profiles {
    map: RwLock<HashMap<u64, String>>,
}

impl Profiles {
    pub fn get(&self, user: u64) -> Option<String> {
        self.map.read().unwrap().get(&user).cloned()
    }

    /// Runs `load` only for an absent user, with no lock held; the first value stored wins.
    pub fn get_or_load(&self, user: u64, load: impl FnOnce() -> String) -> String {
        if let Some(name) = self.get(user) {
            return name;
        }
        let name = load();
        self.map
            .write()
            .unwrap()
            .entry(user)
            .or_insert(name)
            .clone()
    }

    pub fn set(&self, user: u64, name: String) -> Option<String> {
        self.map.write().unwrap().insert(user, name)
    }

    pub fn remove(&self, user: u64) -> Option<String> {
        self.map.write().unwrap().remove(&user)
    }

    /// Replaces a present user's name with `f(name)` in one atomic step.
    pub fn update(&self, user: u64, f: impl Fn(&str) -> String) -> Option<String> {
        let mut map = self.map.write().unwrap();
        let name = map.get_mut(&user)?;
        *name = f(name);
        Some(name.clone())
    }

    /// Every name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.read().unwrap().values().cloned().collect();
        names.sort();
        names
    }
}
