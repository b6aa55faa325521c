use dualmap::DualMap;

#[derive(Default)]
pub struct Profiles {
    map: DualMap<u64, String>,
}

impl Profiles {
    pub fn get(&self, user: u64) -> Option<String> {
        self.map.get_cloned(&user)
    }

    /// Runs `load` only for an absent user, with no lock held; the first value stored wins.
    pub fn get_or_load(&self, user: u64, load: impl FnOnce() -> String) -> String {
        String::clone(&self.map.get_or_insert_with(user, load).into_ref())
    }

    pub fn set(&self, user: u64, name: String) -> Option<String> {
        self.map.insert(user, name).as_deref().cloned()
    }

    pub fn remove(&self, user: u64) -> Option<String> {
        self.map.remove(&user).as_deref().cloned()
    }

    /// Replaces a present user's name with `f(name)` in one atomic step (with no lock held:
    /// `f` runs again if another write came first).
    pub fn update(&self, user: u64, f: impl Fn(&str) -> String) -> Option<String> {
        self.map.update(&user, |name| f(name)).as_deref().cloned()
    }

    /// Every name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .map
            .view()
            .iter()
            .map(|(_, name)| name.clone())
            .collect();
        names.sort();
        names
    }
}
