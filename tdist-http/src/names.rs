//! Span names of routed requests (`GET /users/{id}`) and gRPC calls (`service/method`), made
//! once per method and route (or gRPC path).
//!
//! A router's routes are few and fixed, but formatting the name for every request costs a
//! `format!` and an allocation that the reporter's thread later frees: about as much as the
//! rest of the span together. Names are instead interned: made and leaked once for the process,
//! found again through a per-thread cache. The number interned is bounded ([`MAX_NAMES`]), so
//! a `Route` that is not a template (a raw path, unbounded) cannot grow memory without limit;
//! past the bound names are formatted per request as before. So is a key longer than
//! [`MAX_KEY_LEN`]: routes and gRPC method paths are short, and a long one (which a client can
//! send as a gRPC path, up to the size of a request line) must not be kept for the process.

use http::Method;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Mutex;

/// The most names interned for the process.
pub(crate) const MAX_NAMES: usize = 4096;

/// The longest route or gRPC path interned, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 256;

/// The standard methods, in the order of [`standard_method`]'s slots.
const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// The slot of a gRPC call's name (`service/method`, from its path) beside the methods'.
const GRPC: usize = METHODS.len();

/// A key's interned names: for a route, one per standard method; for a gRPC path, its name.
type Names = [Option<&'static str>; METHODS.len() + 1];

/// The name of slot `i` for `key`: `METHOD route`, or a gRPC path without its leading `/`.
fn make(i: usize, key: &str) -> String {
    match METHODS.get(i) {
        Some(method) => format!("{method} {key}"),
        None => key.strip_prefix('/').unwrap_or(key).to_owned(),
    }
}

/// A small, fast hasher for short keys (routes, gRPC paths): eight bytes at a time, each
/// folded into the state by a 64×64→128-bit multiply whose halves are xored. Every map starts
/// it from a random seed of its own ([`Seeded`]): a gRPC path is the client's choice, and with
/// a fixed start a client could compute paths that all land in one bucket chain, making each
/// lookup compare thousands of keys.
#[derive(Default)]
struct RouteHasher(u64);

impl RouteHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * 0x517c_c1b7_2722_0a95;
        self.0 = (product as u64) ^ (product >> 64) as u64;
    }
}

impl Hasher for RouteHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            self.mix(u64::from_le_bytes(*word));
            rest = tail;
        }
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The tail's length in the top byte (always zero there): `a` and `a\0` differ.
            self.mix(u64::from_le_bytes(w) | (rest.len() as u64) << 56);
        }
    }

    // `str`'s `Hash` ends with a `0xff` byte: one mix, not a second pass through `write`.
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Makes [`RouteHasher`]s that start from this map's random seed.
#[derive(Clone)]
struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Seeded {
        use std::hash::BuildHasher;
        // The standard library's per-process random keys, as its own maps use them.
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = RouteHasher;

    #[inline]
    fn build_hasher(&self) -> RouteHasher {
        RouteHasher(self.0)
    }
}

type Map<V> = HashMap<Box<str>, V, Seeded>;

thread_local! {
    /// This thread's view of the interned names.
    static CACHE: RefCell<Map<Names>> = RefCell::default();
}

/// Every interned name.
static INTERNED: Mutex<Option<Interner>> = Mutex::new(None);

/// Names made and leaked, at most `max` of them.
#[derive(Default)]
struct Interner {
    names: Map<Names>,
    count: usize,
}

impl Interner {
    /// The name of slot `i` for `key`, made if there is room for it.
    fn get_or_make(&mut self, i: usize, key: &str, max: usize) -> Option<&'static str> {
        if let Some(name) = self.names.get(key).and_then(|names| names[i]) {
            return Some(name);
        }
        if self.count >= max {
            return None;
        }
        let name: &'static str = Box::leak(make(i, key).into());
        self.names.entry(key.into()).or_default()[i] = Some(name);
        self.count += 1;
        Some(name)
    }
}

/// A standard method's slot (its index in [`METHODS`]) and name; `None` for other methods.
/// The HTTP layers name spans with it too, so one table serves both.
#[inline]
pub(crate) fn standard_method(method: &Method) -> Option<(usize, &'static str)> {
    let i = match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => return None,
    };
    Some((i, METHODS[i]))
}

/// `method route` as a span name: interned for the standard methods (while fewer than
/// [`MAX_NAMES`] are), else formatted.
#[inline]
pub(crate) fn route_name(method: &Method, route: &str) -> Cow<'static, str> {
    match standard_method(method) {
        Some((i, _)) => name(i, route),
        None => Cow::Owned(format!("{method} {route}")),
    }
}

/// A gRPC call's name, `service/method`, from its path (`/service/method`, already checked):
/// interned like route names.
#[inline]
pub(crate) fn grpc_name(path: &str) -> Cow<'static, str> {
    name(GRPC, path)
}

/// The name of slot `i` for `key`, from this thread's cache or else [`intern`].
#[inline]
fn name(i: usize, key: &str) -> Cow<'static, str> {
    if key.len() > MAX_KEY_LEN {
        return Cow::Owned(make(i, key));
    }
    let cached = CACHE
        .try_with(|c| {
            c.try_borrow()
                .ok()
                .and_then(|c| c.get(key).and_then(|names| names[i]))
        })
        .ok()
        .flatten();
    match cached {
        Some(name) => Cow::Borrowed(name),
        None => intern(i, key),
    }
}

/// The slow path: finds or makes the name in the process-wide table and caches it here.
#[cold]
#[inline(never)]
fn intern(i: usize, key: &str) -> Cow<'static, str> {
    let made = INTERNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(Interner::default)
        .get_or_make(i, key, MAX_NAMES);
    let Some(name) = made else {
        return Cow::Owned(make(i, key));
    };
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.entry(key.into()).or_default()[i] = Some(name);
        }
    });
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_once_and_found_again() {
        let a = route_name(&Method::GET, "/names-test/{id}");
        let b = route_name(&Method::GET, "/names-test/{id}");
        assert_eq!(a, "GET /names-test/{id}");
        // The same interned string both times, borrowed.
        match (&a, &b) {
            (Cow::Borrowed(x), Cow::Borrowed(y)) => assert!(std::ptr::eq(*x, *y)),
            _ => panic!("not interned: {a:?} {b:?}"),
        }
        // Another method of the same route is another name; another thread finds it too.
        assert_eq!(
            route_name(&Method::POST, "/names-test/{id}"),
            "POST /names-test/{id}"
        );
        let there = std::thread::spawn(|| route_name(&Method::GET, "/names-test/{id}"))
            .join()
            .unwrap();
        assert!(matches!(there, Cow::Borrowed(s) if std::ptr::eq(s, &*a)));
        // A method outside the standard ones is formatted.
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert!(matches!(route_name(&purge, "/x"), Cow::Owned(s) if s == "PURGE /x"));
    }

    #[test]
    fn grpc_names_come_from_the_path() {
        let a = grpc_name("/names.test.Svc/Get");
        assert_eq!(a, "names.test.Svc/Get");
        let b = grpc_name("/names.test.Svc/Get");
        assert!(matches!((&a, &b), (Cow::Borrowed(x), Cow::Borrowed(y)) if std::ptr::eq(*x, *y)));
        // The same text as a route is another name.
        assert_eq!(
            route_name(&Method::POST, "/names.test.Svc/Get"),
            "POST /names.test.Svc/Get"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        // Routes that are not templates (here: unique per request) stop being interned at the
        // bound; names already made are still found.
        let mut table = Interner::default();
        for n in 0..8 {
            let made = table.get_or_make(1, &format!("/bounded/{n}"), 8);
            assert_eq!(made, Some(&*format!("POST /bounded/{n}")));
        }
        assert_eq!(table.get_or_make(1, "/bounded/late", 8), None);
        assert_eq!(
            table.get_or_make(1, "/bounded/3", 8),
            Some("POST /bounded/3")
        );
        assert_eq!(table.count, 8);
    }

    /// A long key is named per request and never kept: a client that sends long gRPC paths
    /// cannot make the process hold them (each kept name is three copies of its key).
    #[test]
    fn long_keys_are_not_kept() {
        let long = format!("/{}/M", "s".repeat(MAX_KEY_LEN));
        assert!(matches!(grpc_name(&long), Cow::Owned(_)));
        assert!(matches!(route_name(&Method::GET, &long), Cow::Owned(_)));
        let table = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        let kept = table
            .as_ref()
            .is_some_and(|t| t.names.contains_key(long.as_str()));
        assert!(!kept, "the long key was interned");
        assert!(crate::grpc::service_and_method(&long).is_none());
        assert!(crate::grpc::service_and_method("/pkg.Svc/Method").is_some());
    }

    #[test]
    fn the_hasher_tells_short_keys_apart() {
        let h = |s: &str| {
            let mut h = RouteHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        let keys = [
            "/a",
            "/b",
            "/a/",
            "/users/{id}",
            "/users/{id}/x",
            "",
            "/users/{id}\0",
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(h(a), h(b), "{a:?} {b:?}");
            }
        }
    }

    /// Each map hashes from a seed of its own, and a difference that cancelled out whatever
    /// the start of the old multiply-and-rotate hasher (the top bit of one word against bit 4
    /// of the next) no longer does, so a client cannot make colliding gRPC paths offline.
    #[test]
    fn the_hasher_is_seeded_and_has_no_fixed_collisions() {
        use std::hash::BuildHasher;
        let (a, b) = (Seeded::default(), Seeded::default());
        assert_ne!(a.0, b.0);
        assert_ne!(a.hash_one("/pkg.Svc/Get"), b.hash_one("/pkg.Svc/Get"));
        let word = |bytes: &[u8]| {
            let mut h = a.build_hasher();
            h.write(bytes);
            h.finish()
        };
        let mut x = *b"/pkg.Svc/Method1";
        let mut y = x;
        y[7] ^= 0x80;
        y[8] ^= 0x10;
        assert_ne!(word(&x), word(&y));
        x[7] ^= 0x80;
        assert_ne!(word(&x), word(&y));
    }
}
