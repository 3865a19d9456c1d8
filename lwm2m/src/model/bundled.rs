//! The crate's own definitions of the objects every server needs without any DDF file: the
//! core objects of OMA LwM2M TS 1.2 Core Appendix E (0 Security, 1 Server, 2 Access
//! Control, 3 Device, 4 Connectivity Monitoring, 5 Firmware Update, 6 Location, 7
//! Connectivity Statistics) at their latest registered versions, and the IPSO objects most
//! fleets report (3303 Temperature, 3304 Humidity, 3311 Light Control, 3313 Accelerometer,
//! 3323 Pressure).
//!
//! Written as compact Rust tables rather than embedded XML: they cost no parsing at start-up,
//! cannot fail to load, and keep the crate free of copies of the registry's files. They hold
//! what decoding and validation need (id, name, operations, multiplicity, mandatory, type,
//! range, units) and a one-line object summary of our own; resource descriptions are left
//! empty (load the DDF files for those). The test at the bottom checks every table against
//! the public OMA registry files when they are present.
use super::object::{ObjectDef, Operations, ResourceDef};
use super::value::ResourceType;

/// One bundled object.
struct Obj {
    id: u16,
    name: &'static str,
    version: &'static str,
    lwm2m_version: &'static str,
    urn: &'static str,
    multiple: bool,
    mandatory: bool,
    description: &'static str,
    resources: &'static [Res],
}

/// One bundled resource: id, name, operations, multiple, mandatory, type, range, units
/// (empty strings for no range and no units).
type Res = (
    u16,
    &'static str,
    Operations,
    bool,
    bool,
    ResourceType,
    &'static str,
    &'static str,
);

const SINGLE: bool = false;
const MULTIPLE: bool = true;
const OPTIONAL: bool = false;
const MANDATORY: bool = true;

const NO: Operations = Operations::NONE;
const R: Operations = Operations::R;
const W: Operations = Operations::W;
const RW: Operations = Operations::RW;
const E: Operations = Operations::E;

use ResourceType::{
    Boolean as Bool, Float, Integer as Int, None as NoValue, ObjectLink as Objlnk, Opaque,
    String as Str, Time, UnsignedInteger as UInt,
};

/// Every bundled object, by increasing id.
const OBJECTS: &[&Obj] = &[
    &SECURITY,
    &SERVER,
    &ACCESS_CONTROL,
    &DEVICE,
    &CONNECTIVITY_MONITORING,
    &FIRMWARE_UPDATE,
    &LOCATION,
    &CONNECTIVITY_STATISTICS,
    &TEMPERATURE,
    &HUMIDITY,
    &LIGHT_CONTROL,
    &ACCELEROMETER,
    &PRESSURE,
];

/// The bundled definitions, built from the tables.
pub(crate) fn definitions() -> impl Iterator<Item = ObjectDef> {
    OBJECTS.iter().map(|o| ObjectDef {
        id: o.id,
        name: o.name.to_string(),
        description: o.description.to_string(),
        version: o.version.to_string(),
        lwm2m_version: o.lwm2m_version.to_string(),
        urn: o.urn.to_string(),
        multiple: o.multiple,
        mandatory: o.mandatory,
        resources: o.resources.iter().map(|r| (r.0, resource(r))).collect(),
    })
}

fn resource(&(id, name, operations, multiple, mandatory, kind, range, units): &Res) -> ResourceDef {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ResourceDef {
        id,
        name: name.to_string(),
        operations,
        multiple,
        mandatory,
        kind,
        range: text(range),
        units: text(units),
        description: String::new(),
    }
}

#[rustfmt::skip]
const SECURITY: Obj = Obj {
    id: 0,
    name: "LWM2M Security",
    version: "1.2",
    lwm2m_version: "1.1",
    urn: "urn:oma:lwm2m:oma:0:1.2",
    multiple: MULTIPLE,
    mandatory: MANDATORY,
    description: "Keys and URI for reaching one LwM2M Server or the Bootstrap-Server; bootstrap-only.",
    resources: &[
        (0, "LWM2M Server URI", NO, SINGLE, MANDATORY, Str, "0..255", ""),
        (1, "Bootstrap-Server", NO, SINGLE, MANDATORY, Bool, "", ""),
        (2, "Security Mode", NO, SINGLE, MANDATORY, Int, "0..4", ""),
        (3, "Public Key or Identity", NO, SINGLE, MANDATORY, Opaque, "", ""),
        (4, "Server Public Key", NO, SINGLE, MANDATORY, Opaque, "", ""),
        (5, "Secret Key", NO, SINGLE, MANDATORY, Opaque, "", ""),
        (6, "SMS Security Mode", NO, SINGLE, OPTIONAL, Int, "0..255", ""),
        (7, "SMS Binding Key Parameters", NO, SINGLE, OPTIONAL, Opaque, "6", ""),
        (8, "SMS Binding Secret Key(s)", NO, SINGLE, OPTIONAL, Opaque, "16,32,48", ""),
        (9, "LwM2M Server SMS Number", NO, SINGLE, OPTIONAL, Str, "", ""),
        (10, "Short Server ID", NO, SINGLE, OPTIONAL, Int, "1..65534", ""),
        (11, "Client Hold Off Time", NO, SINGLE, OPTIONAL, Int, "", "s"),
        (12, "Bootstrap-Server Account Timeout", NO, SINGLE, OPTIONAL, Int, "", "s"),
        (13, "Matching Type", NO, SINGLE, OPTIONAL, UInt, "0..3", ""),
        (14, "SNI", NO, SINGLE, OPTIONAL, Str, "", ""),
        (15, "Certificate Usage", NO, SINGLE, OPTIONAL, UInt, "0..3", ""),
        (16, "DTLS/TLS Ciphersuite", NO, MULTIPLE, OPTIONAL, UInt, "", ""),
        (17, "OSCORE Security Mode", NO, SINGLE, OPTIONAL, Objlnk, "", ""),
        (18, "Groups To Use by Client", NO, MULTIPLE, OPTIONAL, UInt, "0..65535", ""),
        (19, "Signature Algorithms Supported by Server", NO, MULTIPLE, OPTIONAL, UInt, "0..65535", ""),
        (20, "Signature Algorithms To Use by Client", NO, MULTIPLE, OPTIONAL, UInt, "0..65535", ""),
        (21, "Signature Algorithm Certs Supported by Server", NO, MULTIPLE, OPTIONAL, UInt, "0..65535", ""),
        (22, "TLS 1.3 Features To Use by Client", NO, SINGLE, OPTIONAL, UInt, "0..65535", ""),
        (23, "TLS Extensions Supported by Server", NO, SINGLE, OPTIONAL, UInt, "0..65535", ""),
        (24, "TLS Extensions To Use by Client", NO, SINGLE, OPTIONAL, UInt, "0..65535", ""),
        (25, "Secondary LwM2M Server URI", NO, MULTIPLE, OPTIONAL, Str, "0..255", ""),
        (26, "MQTT Server", NO, SINGLE, OPTIONAL, Objlnk, "", ""),
        (27, "LwM2M COSE Security", NO, MULTIPLE, OPTIONAL, Objlnk, "", ""),
        (28, "RDS Destination Port", NO, SINGLE, OPTIONAL, Int, "0..15", ""),
        (29, "RDS Source Port", NO, SINGLE, OPTIONAL, Int, "0..15", ""),
        (30, "RDS Application ID", NO, SINGLE, OPTIONAL, Str, "", ""),
    ],
};

#[rustfmt::skip]
const SERVER: Obj = Obj {
    id: 1,
    name: "LwM2M Server",
    version: "1.2",
    lwm2m_version: "1.2",
    urn: "urn:oma:lwm2m:oma:1:1.2",
    multiple: MULTIPLE,
    mandatory: MANDATORY,
    description: "Registration settings for one LwM2M Server: short id, lifetime, binding, defaults.",
    resources: &[
        (0, "Short Server ID", R, SINGLE, MANDATORY, Int, "1..65534", ""),
        (1, "Lifetime", RW, SINGLE, MANDATORY, Int, "", "s"),
        (2, "Default Minimum Period", RW, SINGLE, OPTIONAL, Int, "", "s"),
        (3, "Default Maximum Period", RW, SINGLE, OPTIONAL, Int, "", "s"),
        (4, "Disable", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (5, "Disable Timeout", RW, SINGLE, OPTIONAL, Int, "", "s"),
        (6, "Notification Storing When Disabled or Offline", RW, SINGLE, MANDATORY, Bool, "", ""),
        (7, "Binding", RW, SINGLE, MANDATORY, Str, "", ""),
        (8, "Registration Update Trigger", E, SINGLE, MANDATORY, NoValue, "", ""),
        (9, "Bootstrap-Request Trigger", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (10, "APN Link", RW, SINGLE, OPTIONAL, Objlnk, "", ""),
        (11, "TLS-DTLS Alert Code", R, SINGLE, OPTIONAL, UInt, "0..255", ""),
        (12, "Last Bootstrapped", R, SINGLE, OPTIONAL, Time, "", ""),
        (13, "Registration Priority Order", R, SINGLE, OPTIONAL, UInt, "", ""),
        (14, "Initial Registration Delay Timer", RW, SINGLE, OPTIONAL, UInt, "", "s"),
        (15, "Registration Failure Block", R, SINGLE, OPTIONAL, Bool, "", ""),
        (16, "Bootstrap on Registration Failure", R, SINGLE, OPTIONAL, Bool, "", ""),
        (17, "Communication Retry Count", RW, SINGLE, OPTIONAL, UInt, "", ""),
        (18, "Communication Retry Timer", RW, SINGLE, OPTIONAL, UInt, "", "s"),
        (19, "Communication Sequence Delay Timer", RW, SINGLE, OPTIONAL, UInt, "", "s"),
        (20, "Communication Sequence Retry Count", RW, SINGLE, OPTIONAL, UInt, "", ""),
        (21, "Trigger", RW, SINGLE, OPTIONAL, Bool, "", ""),
        (22, "Preferred Transport", RW, SINGLE, OPTIONAL, Str, "The possible values are those listed in the LwM2M Core Specification", ""),
        (23, "Mute Send", RW, SINGLE, OPTIONAL, Bool, "", ""),
        (24, "Alternate APN Links", RW, MULTIPLE, OPTIONAL, Objlnk, "", ""),
        (25, "Supported Server Versions", RW, MULTIPLE, OPTIONAL, Str, "", ""),
        (26, "Default Notification Mode", RW, SINGLE, OPTIONAL, Int, "0..1", ""),
        (27, "Profile ID Hash Algorithm", RW, SINGLE, OPTIONAL, UInt, "0..255", ""),
    ],
};

#[rustfmt::skip]
const ACCESS_CONTROL: Obj = Obj {
    id: 2,
    name: "LwM2M Access Control",
    version: "1.1",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:oma:2:1.1",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "The access rights each LwM2M Server has on one object instance.",
    resources: &[
        (0, "Object ID", R, SINGLE, MANDATORY, Int, "1..65534", ""),
        (1, "Object Instance ID", R, SINGLE, MANDATORY, Int, "0..65535", ""),
        (2, "ACL", RW, MULTIPLE, OPTIONAL, Int, "0..31", ""),
        (3, "Access Control Owner", RW, SINGLE, MANDATORY, Int, "0..65535", ""),
    ],
};

#[rustfmt::skip]
const DEVICE: Obj = Obj {
    id: 3,
    name: "Device",
    version: "1.2",
    lwm2m_version: "1.1",
    urn: "urn:oma:lwm2m:oma:3:1.2",
    multiple: SINGLE,
    mandatory: MANDATORY,
    description: "Device identity, power, memory, time, and the reboot and factory-reset actions.",
    resources: &[
        (0, "Manufacturer", R, SINGLE, OPTIONAL, Str, "", ""),
        (1, "Model Number", R, SINGLE, OPTIONAL, Str, "", ""),
        (2, "Serial Number", R, SINGLE, OPTIONAL, Str, "", ""),
        (3, "Firmware Version", R, SINGLE, OPTIONAL, Str, "", ""),
        (4, "Reboot", E, SINGLE, MANDATORY, NoValue, "", ""),
        (5, "Factory Reset", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (6, "Available Power Sources", R, MULTIPLE, OPTIONAL, Int, "0..7", ""),
        (7, "Power Source Voltage", R, MULTIPLE, OPTIONAL, Int, "", ""),
        (8, "Power Source Current", R, MULTIPLE, OPTIONAL, Int, "", ""),
        (9, "Battery Level", R, SINGLE, OPTIONAL, Int, "0..100", "/100"),
        (10, "Memory Free", R, SINGLE, OPTIONAL, Int, "", ""),
        (11, "Error Code", R, MULTIPLE, MANDATORY, Int, "0..32", ""),
        (12, "Reset Error Code", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (13, "Current Time", RW, SINGLE, OPTIONAL, Time, "", ""),
        (14, "UTC Offset", RW, SINGLE, OPTIONAL, Str, "", ""),
        (15, "Timezone", RW, SINGLE, OPTIONAL, Str, "", ""),
        (16, "Supported Binding and Modes", R, SINGLE, MANDATORY, Str, "", ""),
        (17, "Device Type", R, SINGLE, OPTIONAL, Str, "", ""),
        (18, "Hardware Version", R, SINGLE, OPTIONAL, Str, "", ""),
        (19, "Software Version", R, SINGLE, OPTIONAL, Str, "", ""),
        (20, "Battery Status", R, SINGLE, OPTIONAL, Int, "0..6", ""),
        (21, "Memory Total", R, SINGLE, OPTIONAL, Int, "", ""),
        (22, "ExtDevInfo", R, MULTIPLE, OPTIONAL, Objlnk, "", ""),
    ],
};

#[rustfmt::skip]
const CONNECTIVITY_MONITORING: Obj = Obj {
    id: 4,
    name: "Connectivity Monitoring",
    version: "1.3",
    lwm2m_version: "1.1",
    urn: "urn:oma:lwm2m:oma:4:1.3",
    multiple: SINGLE,
    mandatory: OPTIONAL,
    description: "The bearer, radio signal and IP addressing of the current network connection.",
    resources: &[
        (0, "Network Bearer", R, SINGLE, MANDATORY, Int, "0..50", ""),
        (1, "Available Network Bearer", R, MULTIPLE, MANDATORY, Int, "0..50", ""),
        (2, "Radio Signal Strength", R, SINGLE, MANDATORY, Int, "", "dBm"),
        (3, "Link Quality", R, SINGLE, OPTIONAL, Int, "", ""),
        (4, "IP Addresses", R, MULTIPLE, MANDATORY, Str, "", ""),
        (5, "Router IP Addresses", R, MULTIPLE, OPTIONAL, Str, "", ""),
        (6, "Link Utilization", R, SINGLE, OPTIONAL, Int, "0..100", "/100"),
        (7, "APN", R, MULTIPLE, OPTIONAL, Str, "", ""),
        (8, "Cell ID", R, SINGLE, OPTIONAL, Int, "", ""),
        (9, "SMNC", R, SINGLE, OPTIONAL, Int, "0..999", ""),
        (10, "SMCC", R, SINGLE, OPTIONAL, Int, "0..999", ""),
        (11, "SignalSNR", R, SINGLE, OPTIONAL, Int, "", "dB"),
        (12, "LAC", R, SINGLE, OPTIONAL, Int, "", ""),
        (13, "Coverage Enhancement Level", R, SINGLE, OPTIONAL, Int, "0..4", ""),
    ],
};

#[rustfmt::skip]
const FIRMWARE_UPDATE: Obj = Obj {
    id: 5,
    name: "Firmware Update",
    version: "1.2",
    lwm2m_version: "1.1",
    urn: "urn:oma:lwm2m:oma:5:1.2",
    multiple: SINGLE,
    mandatory: OPTIONAL,
    description: "Firmware delivery (push, or pull by URI), the update state machine and its result.",
    resources: &[
        (0, "Package", W, SINGLE, MANDATORY, Opaque, "", ""),
        (1, "Package URI", RW, SINGLE, MANDATORY, Str, "0..255", ""),
        (2, "Update", E, SINGLE, MANDATORY, NoValue, "", ""),
        (3, "State", R, SINGLE, MANDATORY, Int, "0..3", ""),
        (5, "Update Result", R, SINGLE, MANDATORY, Int, "0..11", ""),
        (6, "PkgName", R, SINGLE, OPTIONAL, Str, "0..255", ""),
        (7, "PkgVersion", R, SINGLE, OPTIONAL, Str, "0..255", ""),
        (8, "Firmware Update Protocol Support", R, MULTIPLE, OPTIONAL, Int, "0..5", ""),
        (9, "Firmware Update Delivery Method", R, SINGLE, MANDATORY, Int, "0..2", ""),
        (10, "Cancel", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (11, "Severity", RW, SINGLE, OPTIONAL, Int, "0..2", ""),
        (12, "Last State Change Time", R, SINGLE, OPTIONAL, Time, "", ""),
        (13, "Maximum Defer Period", RW, SINGLE, OPTIONAL, UInt, "", "s"),
        (14, "Automatic Upgrade at Download", RW, SINGLE, OPTIONAL, Bool, "", ""),
    ],
};

#[rustfmt::skip]
const LOCATION: Obj = Obj {
    id: 6,
    name: "Location",
    version: "1.0",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:oma:6",
    multiple: SINGLE,
    mandatory: OPTIONAL,
    description: "Position, altitude, velocity and time of the last location fix.",
    resources: &[
        (0, "Latitude", R, SINGLE, MANDATORY, Float, "", "lat"),
        (1, "Longitude", R, SINGLE, MANDATORY, Float, "", "lon"),
        (2, "Altitude", R, SINGLE, OPTIONAL, Float, "", "m"),
        (3, "Radius", R, SINGLE, OPTIONAL, Float, "", "m"),
        (4, "Velocity", R, SINGLE, OPTIONAL, Opaque, "", ""),
        (5, "Timestamp", R, SINGLE, MANDATORY, Time, "", ""),
        (6, "Speed", R, SINGLE, OPTIONAL, Float, "", "m/s"),
    ],
};

#[rustfmt::skip]
const CONNECTIVITY_STATISTICS: Obj = Obj {
    id: 7,
    name: "Connectivity Statistics",
    version: "1.0",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:oma:7",
    multiple: SINGLE,
    mandatory: OPTIONAL,
    description: "Counters of SMS and IP traffic over a collection period.",
    resources: &[
        (0, "SMS Tx Counter", R, SINGLE, OPTIONAL, Int, "", ""),
        (1, "SMS Rx Counter", R, SINGLE, OPTIONAL, Int, "", ""),
        (2, "Tx Data", R, SINGLE, OPTIONAL, Int, "", ""),
        (3, "Rx Data", R, SINGLE, OPTIONAL, Int, "", ""),
        (4, "Max Message Size", R, SINGLE, OPTIONAL, Int, "", "B"),
        (5, "Average Message Size", R, SINGLE, OPTIONAL, Int, "", "B"),
        (6, "Start", E, SINGLE, MANDATORY, NoValue, "", ""),
        (7, "Stop", E, SINGLE, MANDATORY, NoValue, "", ""),
        (8, "Collection Period", RW, SINGLE, OPTIONAL, Int, "", "s"),
    ],
};

#[rustfmt::skip]
const TEMPERATURE: Obj = Obj {
    id: 3303,
    name: "Temperature",
    version: "1.1",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:ext:3303:1.1",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "IPSO temperature sensor.",
    resources: &[
        (5700, "Sensor Value", R, SINGLE, MANDATORY, Float, "", ""),
        (5601, "Min Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5602, "Max Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5603, "Min Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5604, "Max Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5701, "Sensor Units", R, SINGLE, OPTIONAL, Str, "", ""),
        (5605, "Reset Min and Max Measured Values", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (5750, "Application Type", RW, SINGLE, OPTIONAL, Str, "", ""),
        (5518, "Timestamp", R, SINGLE, OPTIONAL, Time, "", ""),
        (6050, "Fractional Timestamp", R, SINGLE, OPTIONAL, Float, "0..1", "s"),
        (6042, "Measurement Quality Indicator", R, SINGLE, OPTIONAL, Int, "0..23", ""),
        (6049, "Measurement Quality Level", R, SINGLE, OPTIONAL, Int, "0..100", ""),
    ],
};

#[rustfmt::skip]
const HUMIDITY: Obj = Obj {
    id: 3304,
    name: "Humidity",
    version: "1.1",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:ext:3304:1.1",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "IPSO relative humidity sensor.",
    resources: &[
        (5700, "Sensor Value", R, SINGLE, MANDATORY, Float, "", ""),
        (5601, "Min Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5602, "Max Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5603, "Min Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5604, "Max Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5701, "Sensor Units", R, SINGLE, OPTIONAL, Str, "", ""),
        (5605, "Reset Min and Max Measured Values", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (5750, "Application Type", RW, SINGLE, OPTIONAL, Str, "", ""),
        (5518, "Timestamp", R, SINGLE, OPTIONAL, Time, "", ""),
        (6050, "Fractional Timestamp", R, SINGLE, OPTIONAL, Float, "0..1", "s"),
        (6042, "Measurement Quality Indicator", R, SINGLE, OPTIONAL, Int, "0..23", ""),
        (6049, "Measurement Quality Level", R, SINGLE, OPTIONAL, Int, "0..100", ""),
    ],
};

#[rustfmt::skip]
const LIGHT_CONTROL: Obj = Obj {
    id: 3311,
    name: "Light Control",
    version: "1.0",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:ext:3311",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "IPSO light control: on/off, dimmer and energy use.",
    resources: &[
        (5850, "On/Off", RW, SINGLE, MANDATORY, Bool, "", ""),
        (5851, "Dimmer", RW, SINGLE, OPTIONAL, Int, "0..100", "/100"),
        (5852, "On time", RW, SINGLE, OPTIONAL, Int, "", "s"),
        (5805, "Cumulative active power", R, SINGLE, OPTIONAL, Float, "", "Wh"),
        (5820, "Power factor", R, SINGLE, OPTIONAL, Float, "", ""),
        (5706, "Colour", RW, SINGLE, OPTIONAL, Str, "", ""),
        (5701, "Sensor Units", R, SINGLE, OPTIONAL, Str, "", ""),
        (5750, "Application Type", RW, SINGLE, OPTIONAL, Str, "", ""),
    ],
};

#[rustfmt::skip]
const ACCELEROMETER: Obj = Obj {
    id: 3313,
    name: "Accelerometer",
    version: "1.1",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:ext:3313:1.1",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "IPSO accelerometer: acceleration on up to three axes.",
    resources: &[
        (5702, "X Value", R, SINGLE, MANDATORY, Float, "", ""),
        (5703, "Y Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5704, "Z Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5701, "Sensor Units", R, SINGLE, OPTIONAL, Str, "", ""),
        (5603, "Min Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5604, "Max Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5750, "Application Type", RW, SINGLE, OPTIONAL, Str, "", ""),
        (5518, "Timestamp", R, SINGLE, OPTIONAL, Time, "", ""),
        (6050, "Fractional Timestamp", R, SINGLE, OPTIONAL, Float, "0..1", "s"),
        (6042, "Measurement Quality Indicator", R, SINGLE, OPTIONAL, Int, "0..23", ""),
        (6049, "Measurement Quality Level", R, SINGLE, OPTIONAL, Int, "0..100", ""),
    ],
};

#[rustfmt::skip]
const PRESSURE: Obj = Obj {
    id: 3323,
    name: "Pressure",
    version: "1.1",
    lwm2m_version: "1.0",
    urn: "urn:oma:lwm2m:ext:3323:1.1",
    multiple: MULTIPLE,
    mandatory: OPTIONAL,
    description: "IPSO pressure sensor.",
    resources: &[
        (5700, "Sensor Value", R, SINGLE, MANDATORY, Float, "", ""),
        (5701, "Sensor Units", R, SINGLE, OPTIONAL, Str, "", ""),
        (5601, "Min Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5602, "Max Measured Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5603, "Min Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5604, "Max Range Value", R, SINGLE, OPTIONAL, Float, "", ""),
        (5605, "Reset Min and Max Measured Values", E, SINGLE, OPTIONAL, NoValue, "", ""),
        (5821, "Current Calibration", RW, SINGLE, OPTIONAL, Float, "", ""),
        (5750, "Application Type", RW, SINGLE, OPTIONAL, Str, "", ""),
        (5518, "Timestamp", R, SINGLE, OPTIONAL, Time, "", ""),
        (6050, "Fractional Timestamp", R, SINGLE, OPTIONAL, Float, "0..1", "s"),
        (6042, "Measurement Quality Indicator", R, SINGLE, OPTIONAL, Int, "0..23", ""),
        (6049, "Measurement Quality Level", R, SINGLE, OPTIONAL, Int, "0..100", ""),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_ddf;
    use std::collections::BTreeSet;

    /// The public OMA registry files (test data, not part of the crate), if present.
    const REGISTRY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/lwm2m-registry");

    #[test]
    fn tables_are_well_formed() {
        let defs: Vec<ObjectDef> = definitions().collect();
        assert_eq!(defs.len(), OBJECTS.len());
        for (def, obj) in defs.iter().zip(OBJECTS) {
            assert_eq!(
                def.resources.len(),
                obj.resources.len(),
                "/{}: a resource id is listed twice",
                def.id
            );
            assert!(
                crate::model::object::Version::parse(&def.version).is_some(),
                "/{}",
                def.id
            );
            for r in def.resources.values() {
                assert_eq!(
                    r.operations.is_executable(),
                    r.kind == ResourceType::None,
                    "/{}/{}",
                    def.id,
                    r.id
                );
            }
        }
        let ids: Vec<u16> = defs.iter().map(|d| d.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    /// Every bundled object matches the registry's file for the same object and version,
    /// resource by resource (id, name, operations, multiple, mandatory, type, range, units),
    /// and bundles every resource the file defines.
    #[test]
    fn tables_match_the_oma_registry() {
        let dir = std::path::Path::new(REGISTRY_DIR);
        if !dir.is_dir() {
            eprintln!("note: {REGISTRY_DIR} is absent; bundled definitions not checked against the OMA registry");
            return;
        }
        let mut checked = 0;
        for ours in definitions() {
            let file = dir.join(format!("{}.xml", ours.id));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let defs = parse_ddf(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let Some(theirs) = defs
                .iter()
                .find(|d| d.id == ours.id && d.version == ours.version)
            else {
                panic!(
                    "{} has no /{} version {}",
                    file.display(),
                    ours.id,
                    ours.version
                );
            };
            let head = |d: &ObjectDef| {
                (
                    d.id,
                    d.name.clone(),
                    d.version.clone(),
                    d.lwm2m_version.clone(),
                    d.urn.clone(),
                    d.multiple,
                    d.mandatory,
                )
            };
            assert_eq!(head(&ours), head(theirs), "object /{}", ours.id);
            let ids = |d: &ObjectDef| d.resources.keys().copied().collect::<BTreeSet<u16>>();
            assert_eq!(ids(&ours), ids(theirs), "resource ids of /{}", ours.id);
            for (id, r) in &ours.resources {
                let Some(t) = theirs.resources.get(id) else {
                    continue;
                };
                let key = |r: &ResourceDef| {
                    (
                        r.id,
                        r.name.clone(),
                        r.operations,
                        r.multiple,
                        r.mandatory,
                        r.kind,
                        r.range.clone(),
                        r.units.clone(),
                    )
                };
                assert_eq!(key(r), key(t), "/{}/{id}", ours.id);
                checked += 1;
            }
        }
        assert_eq!(
            checked,
            OBJECTS.iter().map(|o| o.resources.len()).sum::<usize>()
        );
    }
}
