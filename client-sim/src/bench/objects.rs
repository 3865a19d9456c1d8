//! The objects of a simulated device (OMA LwM2M TS 1.2 Core Appendix E, IPSO sensors): 0
//! Security and 1 Server for the one server, 3 Device with a working Reboot, 4 Connectivity
//! Monitoring as an NB-IoT modem reports it, 5 Firmware Update idle, and one instance of each
//! configured sensor object, whose Sensor Value (5700) the simulator moves.
//!
//! Firmware Update is there so servers see the object and can read it; its Update (/5/0/2)
//! and package transfer are the firmware issue's to simulate (the hook is
//! [`FIRMWARE_UPDATE`], which the device answers today by acknowledging the Execute only).
use super::names::Psk;
use lwm2m::client::{security_instance, ObjectStore, SecurityMode};
use lwm2m::model::{Instance, Path, Resource, Value};
use std::collections::BTreeMap;

/// Device Reboot (Core E.4): the simulator reboots the device after answering it.
pub(crate) const REBOOT: Path = Path::resource(3, 0, 4);
/// Firmware Update's Update (Core E.6): the seam for the firmware behaviours.
pub(crate) const FIRMWARE_UPDATE: Path = Path::resource(5, 0, 2);

/// How a sensor's value moves: start, largest step, range, units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SensorKind {
    pub start: f64,
    pub step: f64,
    pub min: f64,
    pub max: f64,
    pub units: &'static str,
}

impl SensorKind {
    pub(crate) fn of(object: u16) -> Self {
        match object {
            3303 => Self {
                start: 21.0,
                step: 0.2,
                min: -20.0,
                max: 60.0,
                units: "Cel",
            },
            3304 => Self {
                start: 45.0,
                step: 0.5,
                min: 0.0,
                max: 100.0,
                units: "%RH",
            },
            3323 => Self {
                start: 101.3,
                step: 0.05,
                min: 90.0,
                max: 110.0,
                units: "kPa",
            },
            _ => Self {
                start: 50.0,
                step: 1.0,
                min: 0.0,
                max: 100.0,
                units: "",
            },
        }
    }

    /// The next value of a random walk, rounded to hundredths as a sensor would report it.
    pub(crate) fn walk(&self, value: f64, unit_step: f64) -> f64 {
        let v = (value + unit_step * self.step).clamp(self.min, self.max);
        (v * 100.0).round() / 100.0
    }
}

/// The Sensor Value of `object`'s instance 0.
pub(crate) fn sensor_value(object: u16) -> Path {
    Path::resource(object, 0, 5700)
}

/// The object store of device `number` named `endpoint`, for the server at `server_uri`.
pub(crate) fn device_store(
    endpoint: &str,
    number: u64,
    server_uri: &str,
    psk: Option<&Psk>,
    sensors: &[u16],
) -> anyhow::Result<ObjectStore> {
    let mut store = ObjectStore::standard_with_server(endpoint, server_uri);
    if let Some(psk) = psk {
        // Security mode 0 (PSK) with the identity and key, as a bootstrap would leave them.
        let sec = |r| Path::resource(0, 0, r);
        store.set_value(&sec(2), Value::Integer(0))?;
        store.set_value(&sec(3), Value::Opaque(psk.identity.as_bytes().to_vec()))?;
        store.set_value(&sec(5), Value::Opaque(psk.key.clone()))?;
    }
    store.add_executable(REBOOT)?;
    let int = |v: i64| Resource::Single(Value::Integer(v));
    let str_ = |v: &str| Resource::Single(Value::String(v.to_owned()));
    let ip = format!(
        "10.{}.{}.{}",
        (number >> 16) & 0xff,
        (number >> 8) & 0xff,
        number & 0xff
    );
    store.add_instance(
        4,
        0,
        Instance::from([
            (0, int(7)), // NB-IoT
            (
                1,
                Resource::Multiple(BTreeMap::from([
                    (0, Value::Integer(7)),
                    (1, Value::Integer(6)),
                ])),
            ),
            (2, int(-85 - (number % 30) as i64)),
            (3, int(20)),
            (
                4,
                Resource::Multiple(BTreeMap::from([(0, Value::String(ip))])),
            ),
            (
                7,
                Resource::Multiple(BTreeMap::from([(0, Value::String("iot.example".into()))])),
            ),
            (8, int(0x1a2b_0000 + (number % 0xffff) as i64)),
            (9, int(1)),
            (10, int(262)),
            (13, int((number % 3) as i64)),
        ]),
    )?;
    store.add_instance(
        5,
        0,
        Instance::from([
            (1, str_("")),
            (3, int(0)), // Idle
            (5, int(0)), // Initial value
            (6, str_("nb-sense-fw")),
            (7, str_("1.4.2")),
            (
                8,
                Resource::Multiple(BTreeMap::from([
                    (0, Value::Integer(0)),
                    (1, Value::Integer(1)),
                ])),
            ),
            (9, int(2)), // push and pull
        ]),
    )?;
    store.add_executable(FIRMWARE_UPDATE)?;
    for &object in sensors {
        // Only objects whose definition is known and has a Sensor Value: anything else
        // would register an object the server cannot decode.
        let known = store
            .object_def(object)
            .is_some_and(|d| d.resource(5700).is_some());
        if !known {
            anyhow::bail!("sensor object {object}: not a known IPSO sensor with resource 5700");
        }
        let kind = SensorKind::of(object);
        store
            .add_instance(
                object,
                0,
                Instance::from([
                    (5700, Resource::Single(Value::Float(kind.start))),
                    (5701, str_(kind.units)),
                    (5750, str_("")),
                ]),
            )
            .map_err(|e| anyhow::anyhow!("sensor object {object}: {e}"))?;
    }
    Ok(store)
}

/// The object store of device `number` as it leaves the factory: the objects of
/// [`device_store`] without any LwM2M server account (no Security instance of a server, no
/// Server instance), and one Security instance for the bootstrap server at `bootstrap_uri`
/// with the factory credentials.
pub(crate) fn factory_store(
    endpoint: &str,
    number: u64,
    bootstrap_uri: &str,
    factory: &SecurityMode,
    sensors: &[u16],
) -> anyhow::Result<ObjectStore> {
    let mut store = device_store(endpoint, number, bootstrap_uri, None, sensors)?;
    for object in [0, 1] {
        let ids: Vec<u16> = store.instance_ids(object).collect();
        for i in ids {
            store.remove_instance(object, i)?;
        }
    }
    store.add_instance(0, 0, security_instance(bootstrap_uri, true, factory, None))?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_has_the_core_objects_and_its_sensors() {
        let psk = Psk {
            identity: "d".into(),
            key: vec![1; 16],
        };
        let s = device_store(
            "d",
            7,
            "coaps://127.0.0.1:5684",
            Some(&psk),
            &[3303, 3304, 3323],
        )
        .unwrap();
        let ids: Vec<u16> = s.object_ids().collect();
        for o in [0, 1, 3, 4, 5, 3303, 3304, 3323] {
            assert!(ids.contains(&o), "{o} in {ids:?}");
        }
        assert_eq!(s.value(&Path::resource(0, 0, 2)), Some(&Value::Integer(0)));
        assert_eq!(s.value(&sensor_value(3304)), Some(&Value::Float(45.0)));
        assert!(device_store("d", 7, "coap://x", None, &[9999]).is_err());
    }

    #[test]
    fn a_factory_device_has_the_bootstrap_account_only() {
        let factory = SecurityMode::Psk {
            identity: b"d".to_vec(),
            key: vec![1; 16],
        };
        let s = factory_store("d", 7, "coaps://127.0.0.1:5784", &factory, &[3303]).unwrap();
        assert!(s.server_accounts().is_empty());
        assert_eq!(s.bootstrap_account().unwrap().security, factory);
        assert_eq!(s.instance_ids(1).count(), 0);
        assert!(s.value(&sensor_value(3303)).is_some());
    }

    #[test]
    fn walks_stay_in_range() {
        let k = SensorKind::of(3304);
        let mut v = k.start;
        for _ in 0..10_000 {
            v = k.walk(v, 1.0);
        }
        assert_eq!(v, 100.0);
    }
}
