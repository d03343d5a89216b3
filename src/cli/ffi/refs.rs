//! The refs a `snakepit shell` has shown, by id and by `$N` alias, bounded by
//! what is live: releasing a ref (or the session) forgets it and its aliases.
//!
//! The last [`RELEASED_KEPT`] released refs stay known, so that a script
//! using one after its release still reaches the worker and gets its
//! `ref_not_found` ("released") rather than an unknown-ref error; older ones
//! are forgotten, and the book never grows with the number of refs a long
//! session has seen.

use std::collections::{HashMap, VecDeque};

use snakepit::{ObjectRef, StreamRefValue, Value};

/// Released refs still answered by their worker's own error.
pub(super) const RELEASED_KEPT: usize = 1024;

/// Refs by name (their id, or a `$N` alias).
#[derive(Default)]
pub(super) struct RefBook {
    by_name: HashMap<String, Value>,
    /// The aliases given to each ref id.
    aliases: HashMap<String, Vec<String>>,
    /// Released ref ids still in the book, oldest first.
    released: VecDeque<String>,
}

impl RefBook {
    /// The ref `name` stands for.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.by_name.get(name)
    }

    /// Names in the book (ids and aliases).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Records every object and stream ref inside `value` by id.
    pub fn remember(&mut self, value: &Value) {
        match value {
            Value::Ref(ObjectRef { id, .. }) | Value::StreamRef(StreamRefValue { id, .. }) => {
                self.by_name.insert(id.clone(), value.clone());
            }
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => items.iter().for_each(|item| self.remember(item)),
            Value::Map(entries) => {
                for (k, v) in entries {
                    self.remember(k);
                    self.remember(v);
                }
            }
            _ => {}
        }
    }

    /// Lets `alias` name the known ref `id` too.
    pub fn alias(&mut self, alias: String, id: &str) {
        if let Some(value) = self.by_name.get(id).cloned() {
            self.aliases
                .entry(id.to_string())
                .or_default()
                .push(alias.clone());
            self.by_name.insert(alias, value);
        }
    }

    /// The ref `id` was released: it is forgotten once
    /// [`RELEASED_KEPT`] later releases have happened.
    pub fn released(&mut self, id: &str) {
        if !self.released.iter().any(|r| r == id) {
            self.released.push_back(id.to_string());
        }
        while self.released.len() > RELEASED_KEPT {
            let oldest = self.released.pop_front().expect("over the bound");
            self.forget(&oldest);
        }
    }

    /// The session was released: every ref in the book is.
    pub fn all_released(&mut self) {
        let ids: Vec<String> = self
            .by_name
            .iter()
            .filter(|(name, value)| ref_id(value) == Some(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for id in ids {
            self.released(&id);
        }
    }

    /// Drops `id` and the aliases that still name it.
    fn forget(&mut self, id: &str) {
        self.by_name.remove(id);
        for alias in self.aliases.remove(id).unwrap_or_default() {
            if self.by_name.get(&alias).and_then(ref_id) == Some(id) {
                self.by_name.remove(&alias);
            }
        }
    }
}

fn ref_id(value: &Value) -> Option<&str> {
    match value {
        Value::Ref(obj) => Some(&obj.id),
        Value::StreamRef(stream) => Some(&stream.id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snakepit::ObjectRef;

    fn obj(id: &str) -> Value {
        Value::Ref(ObjectRef {
            id: id.into(),
            session_id: "s".into(),
            type_name: "object".into(),
            repr: String::new(),
        })
    }

    #[test]
    fn releases_forget_refs_and_their_aliases_past_the_bound() {
        let mut book = RefBook::default();
        for n in 0..(RELEASED_KEPT * 3) {
            let id = format!("w/{n}");
            book.remember(&Value::List(vec![obj(&id)]));
            book.alias(format!("${n}"), &id);
            book.released(&id);
        }
        assert_eq!(book.len(), RELEASED_KEPT * 2, "ids and aliases of the kept");
        assert!(book.get("w/0").is_none() && book.get("$0").is_none());
        let last = RELEASED_KEPT * 3 - 1;
        assert!(book.get(&format!("w/{last}")).is_some());
        assert!(book.get(&format!("${last}")).is_some());
    }

    #[test]
    fn an_alias_reused_for_another_ref_survives_the_old_refs_release() {
        let mut book = RefBook::default();
        book.remember(&obj("w/1"));
        book.alias("$a".into(), "w/1");
        book.remember(&obj("w/2"));
        book.alias("$a".into(), "w/2");
        book.forget("w/1");
        assert_eq!(book.get("$a"), Some(&obj("w/2")));
    }

    #[test]
    fn releasing_the_session_bounds_the_book() {
        let mut book = RefBook::default();
        for n in 0..(RELEASED_KEPT * 2) {
            book.remember(&obj(&format!("w/{n}")));
        }
        book.all_released();
        assert_eq!(book.len(), RELEASED_KEPT);
    }
}
