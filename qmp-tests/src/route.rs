//! The two ways a QEMU may offer dynamic monitors: the `monitor-add` and
//! `monitor-remove` commands, or `monitor-qmp` objects made with
//! `object-add` and removed with `object-del`. Every scenario runs through
//! each route the QEMU has.

use std::fmt;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Commands,
    Qom,
}

/// The QOM type a dynamic monitor is on the QOM route.
pub const QOM_TYPE: &str = "monitor-qmp";

impl Route {
    pub const ALL: [Route; 2] = [Route::Commands, Route::Qom];

    /// As `--route` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Route::Commands => "commands",
            Route::Qom => "qom",
        }
    }

    pub fn parse(text: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.name() == text)
    }

    /// The JUnit testsuite and classname: the commands route keeps the
    /// name dashboards already know.
    pub fn suite(self) -> &'static str {
        match self {
            Route::Commands => "monitor_hotplug",
            Route::Qom => "monitor_hotplug_qom",
        }
    }

    /// What a QEMU lacks when it does not have this route.
    pub fn lacking(self) -> &'static str {
        match self {
            Route::Commands => "no monitor-add",
            Route::Qom => "no monitor-qmp object type",
        }
    }

    /// The request that adds a monitor, from arguments as `monitor-add`
    /// takes them (`id`, `chardev`, `pretty`), passed on as they are, so
    /// that a request meant to be refused stays malformed the same way.
    pub fn add_request(self, args: Value) -> (&'static str, Value) {
        match self {
            Route::Commands => ("monitor-add", args),
            Route::Qom => {
                let mut args = match args {
                    Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                args.insert("qom-type".into(), QOM_TYPE.into());
                ("object-add", Value::Object(args))
            }
        }
    }

    /// The request that removes a monitor, from `monitor-remove`'s
    /// arguments (`id`).
    pub fn remove_request(self, args: Value) -> (&'static str, Value) {
        match self {
            Route::Commands => ("monitor-remove", args),
            Route::Qom => ("object-del", args),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_per_route() {
        let args = json!({ "id": "m", "chardev": "c" });
        assert_eq!(Route::Commands.add_request(args.clone()), ("monitor-add", args.clone()));
        assert_eq!(
            Route::Qom.add_request(args),
            ("object-add", json!({ "qom-type": "monitor-qmp", "id": "m", "chardev": "c" }))
        );
        assert_eq!(Route::Qom.remove_request(json!({ "id": "m" })).0, "object-del");
        assert_eq!(Route::parse("qom"), Some(Route::Qom));
        assert_eq!(Route::parse("all"), None);
    }
}
