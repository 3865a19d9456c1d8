//! The steps of one device's bootstrap sequence (OMA LwM2M TS 1.2 Core §6.1):
//! Bootstrap-Discover `/`, Bootstrap-Delete `/0` and `/1`, Bootstrap-Write of the account's
//! Security and Server instances, Bootstrap-Read of the Server instance back (1.1+), and
//! Bootstrap-Finish.
//!
//! A [`Sequence`] is a pure state machine: it says which operation to send next and reads
//! the device's answer to it; the core sends and receives. The choices it makes, and why:
//!
//! - **Content format** of the Writes: the device's `pct` when it is one of TLV, SenML CBOR,
//!   SenML JSON or LwM2M CBOR; otherwise TLV for a device announcing no version or 1.0 (the
//!   only format 1.0 requires), SenML CBOR for 1.1 and later (mandatory for 1.1 clients
//!   that support SenML; LwM2M CBOR is used only when asked for). A Write answered 4.15 or
//!   4.06 is sent again in each format not tried yet, in the order SenML CBOR, TLV,
//!   SenML JSON, LwM2M CBOR.
//! - **Instance ids**: the smallest ids no discovered instance uses, so the new account
//!   never lands on the bootstrap server's own Security instance, which the device keeps.
//! - **Delete**: at object level, which a conforming device applies to everything but its
//!   bootstrap server's Security instance (Core §6.1.7.5). A device refusing that (4.00,
//!   4.05) gets one Delete per discovered instance, sparing that instance itself.
//! - **Discover refused** (4.00, 4.04, 4.05, 5.01): Bootstrap-Discover only exists since
//!   1.1, and a 1.0 device may not know it. The sequence goes on as for a 1.0 device with
//!   nothing discovered, taking the usual layout: the bootstrap server's instance at `/0/0`,
//!   so the account goes to `/0/1` and `/1/0`.
use crate::account::Account;
use crate::encode;
use crate::event::{Failure, Step};
use lwm2m::coap::{msg, CoapOption, MessageClass, Packet, ResponseType};
use lwm2m::content::{self, ContentFormat};
use lwm2m::model::{Node, Path, Schema, MAX_ID};
use lwm2m::ops::bootstrap::{BootstrapOp, Discovery, SECURITY, SERVER};
use std::collections::BTreeSet;

/// Instances of one object remembered from the Discover answer for a per-instance Delete;
/// more make the answer unreadable. A device has a handful; the bound keeps a hostile
/// answer from costing memory for the whole sequence.
pub(crate) const MAX_REMEMBERED_INSTANCES: usize = 256;

/// The longest `lwm2m` version kept from a Discover answer; longer ones are cut.
const MAX_VERSION_LEN: usize = 16;

/// The formats a Write is tried in after the device refused one.
const FALLBACK: [ContentFormat; 4] = [
    ContentFormat::SenmlCbor,
    ContentFormat::Tlv,
    ContentFormat::SenmlJson,
    ContentFormat::Lwm2mCbor,
];

/// Where a sequence is: the operation sent and awaiting its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Discover,
    /// Bootstrap-Delete of a whole object.
    DeleteObject(u16),
    /// Bootstrap-Delete of the instances of `object` one by one; the last one is in flight.
    DeleteInstances {
        object: u16,
        left: Vec<u16>,
    },
    WriteSecurity,
    WriteServer,
    /// Bootstrap-Read of the Server instance just written.
    ReadServer,
    Finish,
}

/// One device's bootstrap sequence.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// The device's endpoint name.
    pub(crate) endpoint: String,
    /// What it is given.
    pub(crate) account: Account,
    /// The `pct` of its Bootstrap-Request.
    preferred: Option<ContentFormat>,
    /// Whether a 1.1+ device reads back its Server instance before Finish.
    verify: bool,
    /// The `lwm2m` version of its Discover answer.
    version: Option<String>,
    /// The format Writes go in now.
    format: ContentFormat,
    /// Formats a Write was sent in (at most the four of [`FALLBACK`]).
    tried: Vec<ContentFormat>,
    /// Discovered instances of `/0` other than the bootstrap server's, and of `/1`.
    security_instances: Vec<u16>,
    server_instances: Vec<u16>,
    /// Where the account's instances go.
    security_id: u16,
    server_id: u16,
    state: State,
}

impl Sequence {
    /// A sequence about to Discover.
    pub(crate) fn new(
        endpoint: String,
        account: Account,
        preferred: Option<ContentFormat>,
        verify: bool,
    ) -> Self {
        let mut seq = Self {
            endpoint,
            account,
            preferred,
            verify,
            version: None,
            format: ContentFormat::Tlv,
            tried: Vec::new(),
            security_instances: Vec::new(),
            server_instances: Vec::new(),
            security_id: 1,
            server_id: 0,
            state: State::Discover,
        };
        seq.format = seq.initial_format();
        seq
    }

    /// The version the device announced.
    pub(crate) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The format the account is written in.
    pub(crate) fn format(&self) -> ContentFormat {
        self.format
    }

    /// The step in progress.
    pub(crate) fn step(&self) -> Step {
        match &self.state {
            State::Discover => Step::Discover(Path::ROOT),
            State::DeleteObject(o) => Step::Delete(Path::object(*o)),
            State::DeleteInstances { object, left } => match left.last() {
                Some(i) => Step::Delete(Path::instance(*object, *i)),
                None => Step::Delete(Path::object(*object)),
            },
            State::WriteSecurity => Step::Write(Path::instance(SECURITY, self.security_id)),
            State::WriteServer => Step::Write(Path::instance(SERVER, self.server_id)),
            State::ReadServer => Step::Read(Path::instance(SERVER, self.server_id)),
            State::Finish => Step::Finish,
        }
    }

    /// The operation of the step in progress.
    pub(crate) fn op(&self) -> Result<BootstrapOp, Failure> {
        let write = |path: Path, instance| {
            encode::instance_payload(self.format, &path, instance)
                .map(|payload| BootstrapOp::Write {
                    path,
                    format: self.format,
                    payload,
                })
                .map_err(|e| Failure::Refused(format!("the account cannot be encoded: {e}")))
        };
        Ok(match &self.state {
            State::Discover => BootstrapOp::Discover(Path::ROOT),
            State::DeleteObject(o) => BootstrapOp::Delete(Path::object(*o)),
            State::DeleteInstances { object, left } => BootstrapOp::Delete(match left.last() {
                Some(i) => Path::instance(*object, *i),
                None => Path::object(*object),
            }),
            State::WriteSecurity => write(
                Path::instance(SECURITY, self.security_id),
                encode::security_instance(&self.account),
            )?,
            State::WriteServer => write(
                Path::instance(SERVER, self.server_id),
                encode::server_instance(&self.account),
            )?,
            State::ReadServer => BootstrapOp::Read {
                path: Path::instance(SERVER, self.server_id),
                accept: Some(self.format),
            },
            State::Finish => BootstrapOp::Finish,
        })
    }

    /// Reads the device's answer to the step in progress: the next operation to send,
    /// `None` once the device accepted Finish, or why the sequence fails — at the step that
    /// was in progress before this call, which the caller takes from [`step`](Self::step)
    /// first.
    pub(crate) fn on_response(
        &mut self,
        response: &Packet,
        schema: &dyn Schema,
    ) -> Result<Option<BootstrapOp>, Failure> {
        let code = match response.header.code {
            MessageClass::Response(code) => code,
            _ => return Err(Failure::Malformed("not a response".into())),
        };
        let success = msg::is_success(response);
        let refused = || Failure::Code {
            code: msg::code_string(response),
        };
        match std::mem::replace(&mut self.state, State::Finish) {
            State::Discover if success => self.discovered(&response.payload)?,
            State::Discover
                if matches!(
                    code,
                    ResponseType::BadRequest
                        | ResponseType::NotFound
                        | ResponseType::MethodNotAllowed
                        | ResponseType::NotImplemented
                ) =>
            {
                self.discovered_nothing();
            }
            State::DeleteObject(object) if success || code == ResponseType::NotFound => {
                self.state = self.after_delete(object);
            }
            State::DeleteObject(object)
                if matches!(
                    code,
                    ResponseType::BadRequest | ResponseType::MethodNotAllowed
                ) =>
            {
                let left = match object {
                    SECURITY => self.security_instances.clone(),
                    _ => self.server_instances.clone(),
                };
                self.state = self.delete_each(object, left);
            }
            State::DeleteInstances { object, mut left }
                if success || code == ResponseType::NotFound =>
            {
                left.pop();
                self.state = self.delete_each(object, left);
            }
            state @ (State::WriteSecurity | State::WriteServer) if success => {
                self.state = match state {
                    State::WriteSecurity => State::WriteServer,
                    _ if self.verify && self.at_least_1_1() => State::ReadServer,
                    _ => State::Finish,
                };
            }
            state @ (State::WriteSecurity | State::WriteServer)
                if matches!(
                    code,
                    ResponseType::UnsupportedContentFormat | ResponseType::NotAcceptable
                ) =>
            {
                let next = FALLBACK.into_iter().find(|f| !self.tried.contains(f));
                let Some(format) = next else {
                    self.state = state;
                    return Err(refused());
                };
                self.format = format;
                self.tried.push(format);
                self.state = state;
            }
            State::ReadServer if success => {
                self.check_read_back(response, schema)?;
                self.state = State::Finish;
            }
            State::Finish if success => return Ok(None),
            state => {
                self.state = state;
                return Err(refused());
            }
        }
        self.op().map(Some)
    }

    /// The format Writes start in.
    fn initial_format(&self) -> ContentFormat {
        match self.preferred {
            Some(
                f @ (ContentFormat::Tlv
                | ContentFormat::SenmlCbor
                | ContentFormat::SenmlJson
                | ContentFormat::Lwm2mCbor),
            ) => f,
            _ if self.at_least_1_1() => ContentFormat::SenmlCbor,
            _ => ContentFormat::Tlv,
        }
    }

    /// Whether the device announced 1.1 or later.
    fn at_least_1_1(&self) -> bool {
        let Some(v) = self.version.as_deref() else {
            return false;
        };
        let mut parts = v.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (1, 1),
            (Some(Ok(major)), None) => major > 1,
            _ => false,
        }
    }

    /// Takes in the Discover answer: version, format, and where the account goes.
    fn discovered(&mut self, payload: &[u8]) -> Result<(), Failure> {
        let discovery = Discovery::parse(payload).map_err(|e| Failure::Malformed(e.to_string()))?;
        self.version = discovery
            .version
            .as_deref()
            .map(|v| v.chars().take(MAX_VERSION_LEN).collect());
        let bootstrap = discovery.bootstrap_security_instance();
        let ids = |object| -> BTreeSet<u16> {
            discovery
                .instances_of(object)
                .filter_map(|i| i.path.instance_id())
                .collect()
        };
        let (security, server) = (ids(SECURITY), ids(SERVER));
        self.security_id = smallest_free(&security)?;
        self.server_id = smallest_free(&server)?;
        self.security_instances = security
            .into_iter()
            .filter(|i| Some(*i) != bootstrap)
            .collect();
        self.server_instances = server.into_iter().collect();
        if self
            .security_instances
            .len()
            .max(self.server_instances.len())
            > MAX_REMEMBERED_INSTANCES
        {
            return Err(Failure::Malformed(format!(
                "more than {MAX_REMEMBERED_INSTANCES} instances of one object"
            )));
        }
        self.format = self.initial_format();
        self.tried = vec![self.format];
        self.state = State::DeleteObject(SECURITY);
        Ok(())
    }

    /// A device that does not know Bootstrap-Discover: a 1.0 device in the usual layout.
    fn discovered_nothing(&mut self) {
        self.security_id = 1;
        self.server_id = 0;
        self.format = self.initial_format();
        self.tried = vec![self.format];
        self.state = State::DeleteObject(SECURITY);
    }

    /// The step after `object` is cleared.
    fn after_delete(&self, object: u16) -> State {
        match object {
            SECURITY => State::DeleteObject(SERVER),
            _ => State::WriteSecurity,
        }
    }

    /// Deletes the next of `left`, or moves on when none is left.
    fn delete_each(&self, object: u16, left: Vec<u16>) -> State {
        if left.is_empty() {
            self.after_delete(object)
        } else {
            State::DeleteInstances { object, left }
        }
    }

    /// Checks the Server instance read back holds the Short Server ID and Lifetime written:
    /// a device that silently dropped the Write is caught before Finish.
    fn check_read_back(&self, response: &Packet, schema: &dyn Schema) -> Result<(), Failure> {
        let path = Path::instance(SERVER, self.server_id);
        let format = msg::uint_option(response, CoapOption::ContentFormat)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(ContentFormat::from_code)
            .unwrap_or(self.format);
        let node = content::decode(format, &path, &response.payload, schema)
            .map_err(|e| Failure::Malformed(e.to_string()))?;
        let Node::Instance(instance) = node else {
            return Err(Failure::Malformed(format!("{path} is not an instance")));
        };
        let read = |r: u16| {
            instance.get(&r).and_then(|res| match res {
                lwm2m::model::Resource::Single(v) => encode::as_integer(v),
                lwm2m::model::Resource::Multiple(_) => None,
            })
        };
        let expect = [
            (
                encode::SERVER_SSID,
                "Short Server ID",
                i64::from(self.account.short_server_id),
            ),
            (
                encode::SERVER_LIFETIME,
                "Lifetime",
                i64::from(self.account.lifetime),
            ),
        ];
        for (r, name, want) in expect {
            match read(r) {
                Some(got) if got == want => {}
                got => {
                    return Err(Failure::Malformed(format!(
                        "{name} read back as {got:?}, written as {want}"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The smallest instance id not in `used`.
fn smallest_free(used: &BTreeSet<u16>) -> Result<u16, Failure> {
    (0..=MAX_ID)
        .find(|i| !used.contains(i))
        .ok_or_else(|| Failure::Malformed("no free instance id".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(pct: Option<ContentFormat>, version: Option<&str>) -> Sequence {
        let mut s = Sequence::new("d".into(), crate::tests::account_for("d"), pct, true);
        s.version = version.map(str::to_owned);
        s
    }

    #[test]
    fn the_write_format_follows_pct_then_the_announced_version() {
        use ContentFormat::*;
        for (pct, version, want) in [
            (None, None, Tlv),
            (None, Some("1.0"), Tlv),
            (None, Some("1.1"), SenmlCbor),
            (None, Some("1.2"), SenmlCbor),
            (None, Some("1.2.1"), SenmlCbor),
            (None, Some("2"), SenmlCbor),
            (None, Some("one"), Tlv),
            (Some(Tlv), Some("1.2"), Tlv),
            (Some(Lwm2mCbor), Some("1.2"), Lwm2mCbor),
            (Some(SenmlJson), None, SenmlJson),
            // Formats that cannot carry an instance Write are not honoured.
            (Some(Text), Some("1.1"), SenmlCbor),
            (Some(Lwm2mJson), Some("1.0"), Tlv),
        ] {
            assert_eq!(
                seq(pct, version).initial_format(),
                want,
                "{pct:?} {version:?}"
            );
        }
    }

    #[test]
    fn a_discover_answer_with_too_many_instances_is_refused() {
        let links: Vec<String> = (0..=MAX_REMEMBERED_INSTANCES as u16 + 1)
            .map(|i| format!("</1/{i}>;ssid={}", i + 1))
            .collect();
        let mut s = seq(None, None);
        assert!(matches!(
            s.discovered(links.join(",").as_bytes()),
            Err(Failure::Malformed(_))
        ));
        let mut s = seq(None, None);
        s.discovered(b"</>;lwm2m=1.1,</0/0>,</0/1>;ssid=1,</0/2>;ssid=2,</1/1>;ssid=1")
            .unwrap();
        assert_eq!((s.security_id, s.server_id), (3, 0));
        assert_eq!(
            s.security_instances,
            [1, 2],
            "the bootstrap account /0/0 is spared"
        );
        assert_eq!(s.server_instances, [1]);
        assert_eq!(s.format, ContentFormat::SenmlCbor);
    }
}
