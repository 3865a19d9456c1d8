//! End to end over loopback: the real `lwm2m-server` runtime (sockets, store, core) against
//! devices running the real `lwm2m::client`, each on its own UDP socket. Covers OMA LwM2M TS
//! 1.2 Core §6.2 (registration), §6.3 (device management), §6.4 (reporting) and Transport
//! §6.5 (queue mode), and a server restart.
use lwm2m::attributes::NotificationAttributes;
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m::content::negotiate::Lwm2mVersion;
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::{Instance, Node, Path, Resource, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest, WriteMode};
use lwm2m::ops::Lwm2mError;
use lwm2m_e2e_tests::{sensor_store, Device, TestServer};
use lwm2m_server::core::types::{
    Command, CommandError, Content, DeregisterReason, DeviceEvent, Outcome,
};
use std::collections::BTreeMap;
use std::time::Duration;

async fn run(s: &TestServer, endpoint: &str, request: DownlinkRequest) -> Outcome {
    s.execute(Command::new(endpoint, request)).await
}

fn string_at(node: &Node, resource: u16) -> Option<String> {
    match node {
        Node::Instance(i) => match i.get(&resource) {
            Some(Resource::Single(Value::String(s))) => Some(s.clone()),
            _ => None,
        },
        Node::Resource(Resource::Single(Value::String(s))) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_management_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let mut dev = Device::start_with(
        s.addr,
        ClientConfig::new("dev-dm"),
        sensor_store("dev-dm", 20.0),
    )
    .await
    .unwrap();
    s.registered("dev-dm").await;

    // Read /3/0 in every multi-value format the device advertises (LwM2M 1.1: SenML CBOR,
    // SenML JSON, TLV), and with the negotiated default.
    for format in [
        Some(ContentFormat::Tlv),
        Some(ContentFormat::SenmlJson),
        Some(ContentFormat::SenmlCbor),
        None,
    ] {
        let cmd = Command {
            format,
            ..Command::new(
                "dev-dm",
                DownlinkRequest::Read {
                    path: Path::instance(3, 0),
                },
            )
        };
        match s.execute(cmd).await {
            Ok(DmResponse::Content { format: got, node }) => {
                assert_eq!(format.unwrap_or(ContentFormat::SenmlCbor), got);
                assert!(
                    string_at(&node, 0).is_some(),
                    "manufacturer present in {got:?}"
                );
            }
            other => panic!("read in {format:?}: {other:?}"),
        }
    }

    // Write a writable resource, read it back; a read-only one is refused.
    let utc = Path::resource(3, 0, 14);
    let write = DownlinkRequest::Write {
        path: utc,
        mode: WriteMode::Replace,
        node: Node::Resource(Resource::Single(Value::String("+01:00".into()))),
    };
    assert_eq!(run(&s, "dev-dm", write).await, Ok(DmResponse::Changed));
    match run(&s, "dev-dm", DownlinkRequest::Read { path: utc }).await {
        Ok(DmResponse::Content { node, .. }) => {
            assert_eq!(string_at(&node, 14).as_deref(), Some("+01:00"))
        }
        other => panic!("{other:?}"),
    }
    let ro = DownlinkRequest::Write {
        path: Path::resource(3, 0, 0),
        mode: WriteMode::Replace,
        node: Node::Resource(Resource::Single(Value::String("x".into()))),
    };
    assert_eq!(
        run(&s, "dev-dm", ro).await,
        Err(CommandError::Lwm2m(Lwm2mError::MethodNotAllowed))
    );
    assert_eq!(
        run(
            &s,
            "dev-dm",
            DownlinkRequest::Read {
                path: Path::resource(3, 0, 999)
            }
        )
        .await,
        Err(CommandError::Lwm2m(Lwm2mError::NotFound))
    );

    // Execute with arguments reaches the device's application.
    let exec_req = DownlinkRequest::Execute {
        path: Path::resource(3, 0, 4),
        args: Some("0='now'".into()),
    };
    assert_eq!(run(&s, "dev-dm", exec_req).await, Ok(DmResponse::Changed));
    let (path, args) = dev
        .wait_for(|e| match e {
            ClientEvent::Executed { path, args } => Some((*path, args.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (path, args.as_deref()),
        (Path::resource(3, 0, 4), Some("0='now'"))
    );

    // Create an instance, read it, delete it.
    let mut inst = Instance::new();
    inst.insert(5700, Resource::Single(Value::Float(18.0)));
    inst.insert(5701, Resource::Single(Value::String("Far".into())));
    let create = DownlinkRequest::Create {
        path: Path::object(3303),
        node: Node::Object(BTreeMap::from([(7, inst)])),
    };
    assert_eq!(
        run(&s, "dev-dm", create).await,
        Ok(DmResponse::Created(Some(Path::instance(3303, 7))))
    );
    match run(
        &s,
        "dev-dm",
        DownlinkRequest::Read {
            path: Path::resource(3303, 7, 5701),
        },
    )
    .await
    {
        Ok(DmResponse::Content { node, .. }) => {
            assert_eq!(string_at(&node, 5701).as_deref(), Some("Far"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(
            &s,
            "dev-dm",
            DownlinkRequest::Delete {
                path: Path::instance(3303, 7)
            }
        )
        .await,
        Ok(DmResponse::Deleted)
    );
    assert_eq!(
        run(
            &s,
            "dev-dm",
            DownlinkRequest::Read {
                path: Path::instance(3303, 7)
            }
        )
        .await,
        Err(CommandError::Lwm2m(Lwm2mError::NotFound))
    );

    // Discover lists the resources.
    match run(
        &s,
        "dev-dm",
        DownlinkRequest::Discover {
            path: Path::instance(3, 0),
        },
    )
    .await
    {
        Ok(DmResponse::Links(links)) => assert!(
            links.iter().any(|l| l.path == Path::resource(3, 0, 0)),
            "{links:?}"
        ),
        other => panic!("{other:?}"),
    }

    // Read-Composite of two paths in one exchange.
    let rc = DownlinkRequest::ReadComposite {
        paths: vec![Path::resource(3, 0, 0), Path::resource(3303, 0, 5700)],
    };
    match run(&s, "dev-dm", rc).await {
        Ok(DmResponse::Composite { records, .. }) => {
            assert!(
                records
                    .iter()
                    .any(|r| r.path == Path::resource(3303, 0, 5700)
                        && r.value == Some(Value::Float(20.0))),
                "{records:?}"
            );
            assert!(records.iter().any(|r| r.path == Path::resource(3, 0, 0)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lwm2m_1_2_device_is_read_in_lwm2m_cbor() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let config = ClientConfig::new("dev-12").with_version(Lwm2mVersion::V1_2, true);
    let _dev = Device::start(s.addr, config).await.unwrap();
    s.registered("dev-12").await;
    match run(
        &s,
        "dev-12",
        DownlinkRequest::Read {
            path: Path::instance(3, 0),
        },
    )
    .await
    {
        Ok(DmResponse::Content { format, node }) => {
            assert_eq!(format, ContentFormat::Lwm2mCbor);
            assert!(string_at(&node, 0).is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_with_attributes_composite_send_update_deregister() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let dev = Device::start_with(
        s.addr,
        ClientConfig::new("dev-obs"),
        sensor_store("dev-obs", 20.0),
    )
    .await
    .unwrap();
    s.registered("dev-obs").await;
    let temp = Path::resource(3303, 0, 5700);

    // Notify only on a change of at least 1.0 (step attribute, Core §5.1.2).
    let attrs = NotificationAttributes {
        st: Some(1.0),
        ..NotificationAttributes::default()
    };
    assert_eq!(
        run(
            &s,
            "dev-obs",
            DownlinkRequest::WriteAttributes {
                path: temp,
                attributes: attrs,
                remove: Vec::new(),
            }
        )
        .await,
        Ok(DmResponse::Changed)
    );
    let (_, observed) = s
        .handle()
        .execute(Command::new(
            "dev-obs",
            DownlinkRequest::Observe { path: temp },
        ))
        .await
        .unwrap();
    assert!(
        matches!(observed, Ok(DmResponse::Content { .. })),
        "{observed:?}"
    );

    for v in [20.4, 21.5] {
        dev.with(move |c, now| {
            let _ = c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(v));
        })
        .await;
    }
    let first = s
        .wait_for(|e| match e {
            DeviceEvent::Notification {
                endpoint,
                content: Content::Node(n),
                ..
            } if endpoint == "dev-obs" => n.value().cloned(),
            _ => None,
        })
        .await;
    assert_eq!(
        first,
        Value::Float(21.5),
        "20.4 is within the step and not notified"
    );

    // Observe-Composite: a change of either path notifies both.
    let oc = DownlinkRequest::ObserveComposite {
        paths: vec![Path::resource(3303, 0, 5701), Path::resource(3, 0, 9)],
    };
    assert!(run(&s, "dev-obs", oc).await.is_ok());
    dev.with(|c, now| {
        let _ = c.set_value(
            now,
            &Path::resource(3303, 0, 5701),
            Value::String("Kel".into()),
        );
    })
    .await;
    let records = s
        .wait_for(|e| match e {
            DeviceEvent::Notification {
                content: Content::Records(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(
        records
            .iter()
            .any(|r| r.path == Path::resource(3303, 0, 5701)
                && r.value == Some(Value::String("Kel".into()))),
        "{records:?}"
    );

    // Cancelling: the device is told (active cancel) and nothing more arrives for it.
    assert!(s
        .handle()
        .cancel_observation("dev-obs", temp)
        .await
        .unwrap()
        .is_ok());

    // Send (Core §6.4.4).
    let rec = vec![Record {
        path: temp,
        value: Some(Value::Float(25.0)),
        time: None,
    }];
    dev.with(move |c, now| {
        let _ = c.send(now, rec);
    })
    .await;
    let sent = s
        .wait_for(|e| match e {
            DeviceEvent::Send { endpoint, records } if endpoint == "dev-obs" => {
                Some(records.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(
        sent.first().and_then(|r| r.value.clone()),
        Some(Value::Float(25.0))
    );

    // Update, then De-register.
    dev.update().await;
    s.wait_for(|e| {
        matches!(e, DeviceEvent::Updated { registration } if registration.endpoint == "dev-obs")
            .then_some(())
    })
    .await;
    dev.deregister().await;
    let reason = s.deregistered("dev-obs").await;
    assert_eq!(reason, DeregisterReason::Requested);
    assert!(s.handle().registrations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_expires_when_the_device_goes_silent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "[registration]\ngrace_secs = 0\n")
        .await
        .unwrap();
    let config = ClientConfig {
        lifetime: 1,
        ..ClientConfig::new("dev-short")
    };
    let dev = Device::start(s.addr, config).await.unwrap();
    s.registered("dev-short").await;
    dev.kill();
    let reason = s.deregistered("dev-short").await;
    assert_eq!(reason, DeregisterReason::Expired);
}

/// Queue mode with the real client and runtime: a command submitted while the device sleeps
/// reaches the device only once it wakes. What the server does meanwhile (nothing sent, the
/// time-to-live, one result) is checked in virtual time by the core's tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_command_reaches_the_device_when_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    // The server's awake window is shorter than the device's: when the device sleeps, the
    // server already holds commands for it.
    let mut s = TestServer::start(dir.path(), 0, "[queue]\nawake_window_secs = 1\n")
        .await
        .unwrap();
    let config = ClientConfig {
        queue_mode: true,
        awake_time: Duration::from_secs(2),
        ..ClientConfig::new("sleepy")
    };
    let mut dev = Device::start(s.addr, config).await.unwrap();
    s.registered("sleepy").await;
    let awake =
        |e: &DeviceEvent| matches!(e, DeviceEvent::Awake { endpoint } if endpoint == "sleepy");
    s.wait_for(|e| awake(e).then_some(())).await;
    dev.wait_for(|e| matches!(e, ClientEvent::Sleeping).then_some(()))
        .await;

    let id = s
        .handle()
        .submit(Command::new(
            "sleepy",
            DownlinkRequest::Execute {
                path: Path::resource(3, 0, 4),
                args: None,
            },
        ))
        .await
        .unwrap();
    // It wakes (Update): the server hears it is awake before the command is answered.
    dev.with(|c, now| c.wake(now)).await;
    s.wait_for(|e| match e {
        DeviceEvent::CommandResult { id: i, outcome, .. } if *i == id => {
            panic!("answered before the device woke: {outcome:?}")
        }
        e => awake(e).then_some(()),
    })
    .await;
    let outcome = s
        .wait_for(|e| match e {
            DeviceEvent::CommandResult { id: i, outcome, .. } if *i == id => Some(outcome.clone()),
            _ => None,
        })
        .await;
    assert_eq!(outcome, Ok(DmResponse::Changed));
    let executed = dev
        .wait_for(|e| match e {
            ClientEvent::Executed { path, .. } => Some(*path),
            _ => None,
        })
        .await;
    assert_eq!(executed, Path::resource(3, 0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_registrations_and_observations() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let port = s.addr.port();
    let mut dev = Device::start_with(
        s.addr,
        ClientConfig::new("dev-persist"),
        sensor_store("dev-persist", 20.0),
    )
    .await
    .unwrap();
    s.registered("dev-persist").await;
    let temp = Path::resource(3303, 0, 5700);
    let observed = s
        .handle()
        .execute(Command::new(
            "dev-persist",
            DownlinkRequest::Observe { path: temp },
        ))
        .await
        .unwrap()
        .1;
    assert!(observed.is_ok());
    let observation = s.observation_started().await;
    s.stop().await;

    // Same data directory, same port: the device carries on without registering again.
    let mut s = TestServer::start(dir.path(), port, "").await.unwrap();
    let regs = s.handle().registrations().await.unwrap();
    assert_eq!(
        regs.iter().map(|r| r.endpoint.as_str()).collect::<Vec<_>>(),
        ["dev-persist"]
    );
    dev.update().await;
    dev.wait_for(|e| matches!(e, ClientEvent::Updated).then_some(()))
        .await;
    dev.with(move |c, now| {
        let _ = c.set_value(now, &temp, Value::Float(23.0));
    })
    .await;
    let (obs, value) = s
        .wait_for(|e| match e {
            DeviceEvent::Notification {
                observation,
                content: Content::Node(n),
                ..
            } => Some((*observation, n.value().cloned())),
            DeviceEvent::Registered { .. } => panic!("the device had to register again"),
            _ => None,
        })
        .await;
    assert_eq!((obs, value), (observation, Some(Value::Float(23.0))));
}
