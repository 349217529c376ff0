//! The model against the spec's own examples: each test is a sentence of
//! docs/behaviour.md played on the model alone.

use super::*;
use crate::explore::ops::ALL_AT_ONCE as ALL;

fn model_with_negotiated_client(route: Route) -> Model {
    let mut m = Model::new(Finish::Teardown, false);
    for op in [
        Op::ChardevAdd { chardev: 0, kind: Kind::Unix },
        Op::MonitorAdd { monitor: 0, chardev: 0, route },
        Op::Connect { client: 0, chardev: 0 },
        Op::Negotiate { client: 0, oob: false },
    ] {
        assert!(m.allows(&op), "{op:?}");
        m.apply(&op);
    }
    m
}

fn owes(step: &Step, client: usize) -> Vec<Owed> {
    step.owed.iter().filter(|(c, _)| *c == client).map(|(_, o)| o.clone()).collect()
}

#[test]
fn a_connecting_client_is_greeted_with_oob_on_a_plain_socket() {
    let mut m = Model::new(Finish::Quit, false);
    m.apply(&Op::ChardevAdd { chardev: 1, kind: Kind::Tcp });
    m.apply(&Op::MonitorAdd { monitor: 2, chardev: 1, route: Route::Qom });
    let step = m.apply(&Op::Connect { client: 3, chardev: 1 });
    assert_eq!(owes(&step, 3), vec![Owed::Greeting { oob: true }]);
    assert_eq!(step.greet_now, vec![3]);
}

#[test]
fn each_route_refuses_the_other_routes_removal() {
    let mut m = model_with_negotiated_client(Route::Commands);
    assert_eq!(
        m.apply(&Op::Remove { monitor: 0, cmd: RemoveCmd::ObjectDel }).succeeds,
        Some(false)
    );
    assert_eq!(m.apply(&Op::Remove { monitor: 0, cmd: RemoveCmd::Hmp }).succeeds, Some(false));
    let step = m.apply(&Op::Remove { monitor: 0, cmd: RemoveCmd::MonitorRemove });
    assert_eq!(step.succeeds, Some(true));
    assert_eq!(owes(&step, 0), vec![Owed::Eof { drop_ok: true, reset_ok: false }]);
}

#[test]
fn monitor_remove_of_an_objects_monitor_is_refused_naming_object_del() {
    let mut m = model_with_negotiated_client(Route::Qom);
    let step = m.apply(&Op::Remove { monitor: 0, cmd: RemoveCmd::MonitorRemove });
    assert_eq!(step.succeeds, Some(false));
    assert_eq!(step.refusal_names, Some("object-del"));
}

#[test]
fn a_busy_chardev_cannot_be_removed_or_shared() {
    let mut m = model_with_negotiated_client(Route::Qom);
    assert_eq!(m.apply(&Op::ChardevRemove { chardev: 0 }).succeeds, Some(false));
    let step = m.apply(&Op::MonitorAdd { monitor: 1, chardev: 0, route: Route::Commands });
    assert_eq!(step.succeeds, Some(false));
    let step = m.apply(&Op::MonitorAdd { monitor: 0, chardev: 0, route: Route::Commands });
    assert_eq!(step.succeeds, Some(false), "a duplicate id");
}

#[test]
fn a_self_removed_client_is_answered_and_then_owed_nothing() {
    let mut m = model_with_negotiated_client(Route::Commands);
    let step = m.apply(&Op::RemoveSelf {
        client: 0,
        before: vec![],
        cmd: RemoveCmd::MonitorRemove,
        then: vec![Request::Version, Request::Stop],
    });
    assert_eq!(owes(&step, 0), vec![Owed::Reply { request: 0, answer: Answer::Return }]);
    assert_eq!(step.wait_unlisted, Some(0));
    assert!(m.running, "stop after the removal must not run");
    let step = m.apply(&Op::StopCont);
    assert!(owes(&step, 0).is_empty(), "no events after self-removal");
}

#[test]
fn a_new_frontend_ends_the_orphan_after_its_output_and_greets_the_next_client() {
    let mut m = model_with_negotiated_client(Route::Commands);
    m.apply(&Op::Send { client: 0, requests: vec![Request::Schema] });
    m.apply(&Op::RemoveSelf {
        client: 0,
        before: vec![],
        cmd: RemoveCmd::MonitorRemove,
        then: vec![],
    });
    let step = m.apply(&Op::MonitorAdd { monitor: 1, chardev: 0, route: Route::Qom });
    assert!(owes(&step, 0).is_empty(), "its output is unread: the end comes after it");
    let step = m.apply(&Op::Connect { client: 1, chardev: 0 });
    assert!(step.greet_now.is_empty(), "waits behind the orphan");
    // Removing the new frontend first changes nothing for the old client.
    let step = m.apply(&Op::Remove { monitor: 1, cmd: RemoveCmd::ObjectDel });
    assert!(owes(&step, 0).is_empty());
    assert_eq!(owes(&step, 1), vec![Owed::Unsure]);
    let step = m.apply(&Op::Read { client: 0, chunk: 1 });
    assert_eq!(owes(&step, 0), vec![Owed::Eof { drop_ok: false, reset_ok: false }]);
}

#[test]
fn the_orphans_own_close_lets_the_waiting_client_in() {
    let mut m = model_with_negotiated_client(Route::Qom);
    m.apply(&Op::RemoveSelf { client: 0, before: vec![], cmd: RemoveCmd::ObjectDel, then: vec![] });
    m.apply(&Op::MonitorAdd { monitor: 0, chardev: 0, route: Route::Qom });
    m.apply(&Op::Connect { client: 1, chardev: 0 });
    let step = m.apply(&Op::Close { client: 0 });
    assert_eq!(step.greet_now, vec![1]);
}

#[test]
fn an_orphan_with_nothing_unread_ends_at_a_new_frontend() {
    let mut m = model_with_negotiated_client(Route::Commands);
    m.apply(&Op::RemoveSelf {
        client: 0,
        before: vec![],
        cmd: RemoveCmd::MonitorRemove,
        then: vec![],
    });
    m.apply(&Op::Read { client: 0, chunk: 1 });
    let step = m.apply(&Op::MonitorAdd { monitor: 2, chardev: 0, route: Route::Commands });
    assert_eq!(owes(&step, 0), vec![Owed::Eof { drop_ok: false, reset_ok: false }]);
    assert_eq!(step.idle, Some(0));
}

/// A pty with monitor m0 (commands route) and client a holding its
/// slave side, greeted and negotiated.
fn model_with_pty_holder() -> Model {
    let mut m = Model::new(Finish::Teardown, false);
    m.apply(&Op::ChardevAdd { chardev: 0, kind: Kind::Pty });
    let step = m.apply(&Op::Connect { client: 0, chardev: 0 });
    assert!(step.owed.is_empty(), "no frontend, no greeting");
    let step = m.apply(&Op::MonitorAdd { monitor: 0, chardev: 0, route: Route::Commands });
    assert_eq!(
        owes(&step, 0),
        vec![Owed::Greeting { oob: false }],
        "a pty's monitor runs in the main loop: no oob"
    );
    assert!(!m.allows(&Op::Negotiate { client: 0, oob: true }));
    m.apply(&Op::Negotiate { client: 0, oob: false });
    m
}

#[test]
fn a_pty_has_one_holder() {
    let m = model_with_pty_holder();
    assert!(!m.allows(&Op::Connect { client: 1, chardev: 0 }));
}

#[test]
fn removing_a_pty_monitor_gives_no_end_of_file_and_a_new_one_greets_the_holder() {
    let mut m = model_with_pty_holder();
    m.apply(&Op::Send { client: 0, requests: vec![Request::Version] });
    let remove = Op::Remove { monitor: 0, cmd: RemoveCmd::MonitorRemove };
    assert!(!m.allows(&remove), "only once the holder read its output");
    m.apply(&Op::Read { client: 0, chunk: ALL });
    let step = m.apply(&remove);
    assert_eq!(step.succeeds, Some(true));
    assert!(owes(&step, 0).is_empty(), "no end of file on a pty");
    assert_eq!(step.idle, None);
    let step = m.apply(&Op::MonitorAdd { monitor: 1, chardev: 0, route: Route::Qom });
    assert_eq!(owes(&step, 0), vec![Owed::Greeting { oob: false }]);
    assert_eq!(step.greet_now, vec![0]);
}

#[test]
fn after_a_self_removal_on_a_pty_the_next_monitor_greets_the_holder() {
    let mut m = model_with_pty_holder();
    let with_more = Op::RemoveSelf {
        client: 0,
        before: vec![],
        cmd: RemoveCmd::MonitorRemove,
        then: vec![Request::Version],
    };
    assert!(!m.allows(&with_more), "a pty keeps input for the next frontend");
    m.apply(&Op::RemoveSelf {
        client: 0,
        before: vec![],
        cmd: RemoveCmd::MonitorRemove,
        then: vec![],
    });
    assert!(!m.allows(&Op::Send { client: 0, requests: vec![Request::Version] }));
    let step = m.apply(&Op::StopCont);
    assert!(owes(&step, 0).is_empty(), "no events after self-removal");
    // Its reply unread: the greeting comes after it.
    let step = m.apply(&Op::MonitorAdd { monitor: 0, chardev: 0, route: Route::Commands });
    assert_eq!(owes(&step, 0), vec![Owed::Greeting { oob: false }]);
    assert!(matches!(m.clients[0].state, ClientState::Greeted(0)));
}

#[test]
fn removing_a_pty_hangs_up_on_its_holder() {
    let mut m = model_with_pty_holder();
    m.apply(&Op::Read { client: 0, chunk: ALL });
    m.apply(&Op::Remove { monitor: 0, cmd: RemoveCmd::MonitorRemove });
    let step = m.apply(&Op::ChardevRemove { chardev: 0 });
    assert_eq!(step.succeeds, Some(true));
    assert_eq!(owes(&step, 0), vec![Owed::Eof { drop_ok: true, reset_ok: false }]);
}

#[test]
fn the_io_thread_first_start_is_the_same_sequence_on_one_cpu() {
    let m = model_with_negotiated_client(Route::Qom);
    let first = m.io_thread_first();
    assert!(first.pinned && first.io_first);
    assert_eq!(first.finish, m.finish);
    assert_eq!(first.mix, m.mix);
    assert_eq!(first.listed(), m.listed());
    assert_eq!(first.clients[0].state, m.clients[0].state);
    // No rule reads the schedule: the same op owes the same.
    let op = Op::RemoveSelf {
        client: 0,
        before: vec![Request::Schema],
        cmd: RemoveCmd::ObjectDel,
        then: vec![],
    };
    let (mut plain, mut io) = (m.clone(), first);
    assert_eq!(plain.apply(&op).owed, io.apply(&op).owed);
}

#[test]
fn race_reruns_alternate_the_io_thread_first_with_the_sequences_own_start() {
    let m = Model::new(Finish::Sigterm, false);
    let starts = |io_first| -> Vec<(bool, bool)> {
        (1..=4)
            .map(|k| crate::explore::rerun_start(&m, k, io_first))
            .map(|s| (s.pinned, s.io_first))
            .collect()
    };
    assert_eq!(starts(true), vec![(true, true), (false, false), (true, true), (false, false)]);
    assert_eq!(crate::explore::rerun_start(&m, 1, true).finish, Finish::Sigterm);
    // Where no real-time priority may be given, reruns are as generated.
    assert_eq!(starts(false), vec![(false, false); 4]);
}

#[test]
fn requests_are_sent_without_arguments() {
    assert_eq!(Request::Oob.to_send(), (true, "migrate-pause", serde_json::Value::Null));
    assert_eq!(Request::Schema.to_send(), (false, "query-qmp-schema", serde_json::Value::Null));
}
