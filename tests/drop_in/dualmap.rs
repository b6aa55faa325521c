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
}
