//! Every operation survives server-side `to_coap` → client-side `from_coap`, and every
//! answer survives client-side `DmResponse::to_coap` → server-side `parse_response`.
use super::*;
use crate::model::{NoSchema, Resource, Value};
use std::collections::BTreeMap;

fn temp_instance() -> Node {
    let mut inst = crate::model::Instance::new();
    inst.insert(5700, Resource::Single(Value::Float(22.5)));
    inst.insert(5701, Resource::Single(Value::String("Cel".into())));
    Node::Instance(inst)
}

fn round_trip(req: DownlinkRequest, format: ContentFormat) {
    let p = req.to_coap(format).unwrap();
    let (back, _accept) = DownlinkRequest::from_coap(&p, &NoSchema).unwrap();
    assert_eq!(back, req, "{}", req.name());
}

#[test]
fn every_request_round_trips_through_coap() {
    let f = ContentFormat::SenmlJson;
    round_trip(
        DownlinkRequest::Read {
            path: Path::instance(3, 0),
        },
        f,
    );
    round_trip(
        DownlinkRequest::Observe {
            path: Path::resource(3303, 0, 5700),
        },
        f,
    );
    round_trip(
        DownlinkRequest::Discover {
            path: Path::object(3),
        },
        f,
    );
    round_trip(
        DownlinkRequest::Write {
            path: Path::instance(3303, 0),
            mode: WriteMode::Replace,
            node: temp_instance(),
        },
        f,
    );
    round_trip(
        DownlinkRequest::Write {
            path: Path::instance(3303, 0),
            mode: WriteMode::Update,
            node: temp_instance(),
        },
        f,
    );
    let attributes = NotificationAttributes {
        pmin: Some(10),
        pmax: Some(60),
        gt: Some(25.5),
        ..Default::default()
    };
    round_trip(
        DownlinkRequest::WriteAttributes {
            path: Path::resource(3303, 0, 5700),
            attributes,
            remove: vec!["lt".into(), "epmax".into()],
        },
        f,
    );
    round_trip(
        DownlinkRequest::Execute {
            path: Path::resource(3, 0, 4),
            args: None,
        },
        f,
    );
    round_trip(
        DownlinkRequest::Execute {
            path: Path::resource(3, 0, 4),
            args: Some("0='x',1".into()),
        },
        f,
    );
    let mut inst = crate::model::Instance::new();
    inst.insert(5700, Resource::Single(Value::Float(1.5)));
    round_trip(
        DownlinkRequest::Create {
            path: Path::object(3303),
            node: Node::Object(BTreeMap::from([(7, inst)])),
        },
        f,
    );
    round_trip(
        DownlinkRequest::Delete {
            path: Path::instance(3303, 7),
        },
        f,
    );
    let paths = vec![Path::resource(3, 0, 0), Path::instance(3303, 0)];
    round_trip(
        DownlinkRequest::ReadComposite {
            paths: paths.clone(),
        },
        f,
    );
    round_trip(
        DownlinkRequest::ObserveComposite { paths },
        ContentFormat::SenmlCbor,
    );
    let records = vec![Record {
        path: Path::resource(3303, 0, 5701),
        value: Some(Value::String("K".into())),
        time: None,
    }];
    round_trip(DownlinkRequest::WriteComposite { records }, f);
}

#[test]
fn answers_round_trip_and_wrong_codes_are_errors() {
    let read = DownlinkRequest::Read {
        path: Path::instance(3303, 0),
    };
    let answer = DmResponse::Content {
        format: ContentFormat::SenmlCbor,
        node: temp_instance(),
    };
    let p = answer
        .to_coap(&read.path(), ContentFormat::SenmlCbor)
        .unwrap();
    assert_eq!(read.parse_response(&p, &NoSchema).unwrap(), answer);

    let create = DownlinkRequest::Create {
        path: Path::object(3303),
        node: Node::Object(BTreeMap::new()),
    };
    let p = DmResponse::Created(Some(Path::instance(3303, 4)))
        .to_coap(&create.path(), ContentFormat::Tlv)
        .unwrap();
    assert_eq!(
        create.parse_response(&p, &NoSchema).unwrap(),
        DmResponse::Created(Some(Path::instance(3303, 4)))
    );
    // A Location-Path that is not an instance of the object names no instance.
    for location in ["", "/3/0", "/3303/4/5700"] {
        let mut p = msg::response(ResponseType::Created);
        for seg in location.split('/').skip(1) {
            p.add_option(CoapOption::LocationPath, seg.as_bytes().to_vec());
        }
        if location.is_empty() {
            p.add_option(CoapOption::LocationPath, Vec::new());
        }
        assert_eq!(
            create.parse_response(&p, &NoSchema).unwrap(),
            DmResponse::Created(None),
            "{location:?}"
        );
    }
    // A 2.04 to a Create is a protocol error, not a success.
    assert!(create
        .parse_response(&msg::response(ResponseType::Changed), &NoSchema)
        .is_err());
    assert_eq!(
        create.parse_response(&msg::response(ResponseType::NotFound), &NoSchema),
        Err(Lwm2mError::NotFound)
    );
}

#[test]
fn request_refusals() {
    // GET on the root, unsupported method, payload without Content-Format, unknown formats.
    assert_eq!(
        DownlinkRequest::from_coap(&msg::request(RequestType::Get, "/"), &NoSchema),
        Err(Lwm2mError::MethodNotAllowed)
    );
    let mut put = msg::request(RequestType::Put, "/3/0/1");
    put.payload = b"x".to_vec();
    assert!(matches!(
        DownlinkRequest::from_coap(&put, &NoSchema),
        Err(Lwm2mError::BadRequest(_))
    ));
    msg::set_uint_option(&mut put, CoapOption::ContentFormat, 9999);
    assert_eq!(
        DownlinkRequest::from_coap(&put, &NoSchema),
        Err(Lwm2mError::UnsupportedContentFormat)
    );
    let mut get = msg::request(RequestType::Get, "/3/0");
    msg::set_uint_option(&mut get, CoapOption::Accept, 9999);
    assert_eq!(
        DownlinkRequest::from_coap(&get, &NoSchema),
        Err(Lwm2mError::NotAcceptable)
    );
    assert!(
        DownlinkRequest::from_coap(&msg::request(RequestType::Get, "/3/x"), &NoSchema).is_err()
    );
}

#[test]
fn write_attributes_refuses_unknown_bare_names() {
    let p = msg::request(RequestType::Put, "/3303/0/5700?pmin=5&bogus");
    assert!(matches!(
        DownlinkRequest::from_coap(&p, &NoSchema),
        Err(Lwm2mError::BadRequest(_))
    ));
    let p = msg::request(RequestType::Put, "/3303/0/5700?pmin=5&PMAX");
    match DownlinkRequest::from_coap(&p, &NoSchema) {
        Ok((
            DownlinkRequest::WriteAttributes {
                attributes, remove, ..
            },
            _,
        )) => {
            assert_eq!(attributes.pmin, Some(5));
            assert_eq!(remove, vec!["pmax".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}
