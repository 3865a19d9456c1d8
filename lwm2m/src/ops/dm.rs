//! The Device Management and Service Enablement interface (OMA LwM2M TS 1.2 Core §6.3;
//! Transport §6.3 for its CoAP form) as typed requests and responses.
//!
//! The server turns a [`DownlinkRequest`] into CoAP with [`DownlinkRequest::to_coap`] and
//! reads the answer with [`DownlinkRequest::parse_response`]; the client role reads the
//! request with [`DownlinkRequest::from_coap`] and answers with [`DmResponse::to_coap`]. One
//! mapping serves both ends, so they cannot disagree.
//!
//! [`DownlinkRequest`] is every request a server sends a client, so it also carries Observe
//! and Observe-Composite; their CoAP form belongs to the Information Reporting interface and
//! lives in [`super::reporting`].
//!
//! | operation | CoAP |
//! | --- | --- |
//! | Read | GET, Accept |
//! | Discover | GET, Accept: application/link-format |
//! | Write (replace) | PUT with payload |
//! | Write (partial update) | POST to an instance (or resource) with payload |
//! | Write-Attributes | PUT with Uri-Query, no payload |
//! | Execute | POST to a resource, optional text arguments |
//! | Create | POST to an object |
//! | Delete | DELETE |
//! | Read-Composite | FETCH / with a SenML or LwM2M CBOR list of paths |
//! | Write-Composite | iPATCH / |
use super::options::{option_format, request_path, set_format};
use super::{reporting, Lwm2mError};
use crate::attributes::NotificationAttributes;
use crate::coap::{msg, CoapOption, MessageClass, Packet, RequestType, ResponseType};
use crate::content::link::{decode_discover, encode_discover, DiscoverEntry};
use crate::content::{self, ContentFormat, Record};
use crate::model::{Node, Path, PathLevel, Schema};

/// Write replaces the target (PUT) or updates the resources given (POST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace the instance or resource with exactly what is sent.
    Replace,
    /// Change only the resources (or resource instances) sent.
    Update,
}

/// A request from the server to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum DownlinkRequest {
    /// Read a node (Core §6.3.1).
    Read {
        /// What to read.
        path: Path,
    },
    /// Discover attributes and implemented resources (Core §6.3.2).
    Discover {
        /// Where.
        path: Path,
    },
    /// Write a node (Core §6.3.3).
    Write {
        /// Where.
        path: Path,
        /// Replace or partial update.
        mode: WriteMode,
        /// The value tree at `path`.
        node: Node,
    },
    /// Set or remove notification attributes (Core §6.3.4, §5.1.2).
    WriteAttributes {
        /// Where.
        path: Path,
        /// The attributes to set.
        attributes: NotificationAttributes,
        /// Names of attributes to remove (`pmin`, `gt`, …), sent as bare query items.
        remove: Vec<String>,
    },
    /// Execute a resource (Core §6.3.5).
    Execute {
        /// The resource.
        path: Path,
        /// Arguments (Core §5.4.5 `0='a',1`), as text.
        args: Option<String>,
    },
    /// Create an object instance (Core §6.3.6).
    Create {
        /// The object.
        path: Path,
        /// The instances to create (a [`Node::Object`]); an instance id the client should
        /// choose is given as 65535 is not allowed, so send one instance with the id wanted.
        node: Node,
    },
    /// Delete an object instance (Core §6.3.7).
    Delete {
        /// The instance.
        path: Path,
    },
    /// Read several paths at once (Core §6.3.8, LwM2M 1.1+).
    ReadComposite {
        /// The paths.
        paths: Vec<Path>,
    },
    /// Write several resources at once (Core §6.3.9, LwM2M 1.1+).
    WriteComposite {
        /// Values to write; a record without value deletes a resource instance.
        records: Vec<Record>,
    },
    /// Start observing a node (Core §6.4.1).
    Observe {
        /// What to observe.
        path: Path,
    },
    /// Start observing several paths (Core §6.4.3, LwM2M 1.1+).
    ObserveComposite {
        /// The paths.
        paths: Vec<Path>,
    },
}

/// A successful answer to a [`DownlinkRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum DmResponse {
    /// 2.05 with a node (Read, Observe).
    Content {
        /// The format it came in.
        format: ContentFormat,
        /// The value tree at the request's path.
        node: Node,
    },
    /// 2.05 with several paths (Read-Composite, Observe-Composite).
    Composite {
        /// The format it came in.
        format: ContentFormat,
        /// The values.
        records: Vec<Record>,
    },
    /// 2.05 with link format (Discover).
    Links(Vec<DiscoverEntry>),
    /// 2.04 (Write, Write-Attributes, Execute, Write-Composite).
    Changed,
    /// 2.01 (Create), with the new instance's path when the client said it.
    Created(Option<Path>),
    /// 2.02 (Delete).
    Deleted,
}

fn composite_paths(records: Vec<Record>) -> Vec<Path> {
    records.into_iter().map(|r| r.path).collect()
}

/// Read-Composite (Core §6.3.8): FETCH / with the paths as records without values; the
/// answer comes in the same format.
pub(super) fn read_composite_request(
    paths: &[Path],
    format: ContentFormat,
) -> Result<Packet, Lwm2mError> {
    let records: Vec<Record> = paths
        .iter()
        .map(|p| Record {
            path: *p,
            value: None,
            time: None,
        })
        .collect();
    let mut p = msg::request(RequestType::Fetch, "/");
    p.payload = content::encode_composite(format, &records)?;
    set_format(&mut p, CoapOption::ContentFormat, format);
    set_format(&mut p, CoapOption::Accept, format);
    Ok(p)
}

impl DownlinkRequest {
    /// The path the request addresses (`/` for composites).
    pub fn path(&self) -> Path {
        match self {
            DownlinkRequest::Read { path }
            | DownlinkRequest::Discover { path }
            | DownlinkRequest::Write { path, .. }
            | DownlinkRequest::WriteAttributes { path, .. }
            | DownlinkRequest::Execute { path, .. }
            | DownlinkRequest::Create { path, .. }
            | DownlinkRequest::Delete { path }
            | DownlinkRequest::Observe { path } => *path,
            DownlinkRequest::ReadComposite { .. }
            | DownlinkRequest::WriteComposite { .. }
            | DownlinkRequest::ObserveComposite { .. } => Path::ROOT,
        }
    }

    /// Builds the CoAP request. `format` is the content format to send a payload in and to
    /// ask for (Accept) in the answer; pick it with
    /// [`ClientFormats`](crate::content::negotiate::ClientFormats).
    pub fn to_coap(&self, format: ContentFormat) -> Result<Packet, Lwm2mError> {
        let path = self.path().to_string();
        let mut p = match self {
            DownlinkRequest::Read { .. } => {
                let mut p = msg::request(RequestType::Get, &path);
                set_format(&mut p, CoapOption::Accept, format);
                p
            }
            DownlinkRequest::Observe { .. } => reporting::observe_request(&path, format),
            DownlinkRequest::Discover { .. } => {
                let mut p = msg::request(RequestType::Get, &path);
                set_format(&mut p, CoapOption::Accept, ContentFormat::LinkFormat);
                p
            }
            DownlinkRequest::Write {
                path: at,
                mode,
                node,
            } => {
                let method = match mode {
                    WriteMode::Replace => RequestType::Put,
                    WriteMode::Update => RequestType::Post,
                };
                let mut p = msg::request(method, &path);
                p.payload = content::encode(format, at, node)?;
                set_format(&mut p, CoapOption::ContentFormat, format);
                p
            }
            DownlinkRequest::WriteAttributes {
                attributes, remove, ..
            } => {
                let mut p = msg::request(RequestType::Put, &path);
                for q in attributes
                    .to_query()
                    .into_iter()
                    .chain(remove.iter().cloned())
                {
                    p.add_option(CoapOption::UriQuery, q.into_bytes());
                }
                p
            }
            DownlinkRequest::Execute { args, .. } => {
                let mut p = msg::request(RequestType::Post, &path);
                if let Some(a) = args {
                    p.payload = a.as_bytes().to_vec();
                }
                p
            }
            DownlinkRequest::Create { path: at, node } => {
                let mut p = msg::request(RequestType::Post, &path);
                p.payload = content::encode(format, at, node)?;
                set_format(&mut p, CoapOption::ContentFormat, format);
                p
            }
            DownlinkRequest::Delete { .. } => msg::request(RequestType::Delete, &path),
            DownlinkRequest::ReadComposite { paths } => read_composite_request(paths, format)?,
            DownlinkRequest::ObserveComposite { paths } => {
                reporting::observe_composite_request(paths, format)?
            }
            DownlinkRequest::WriteComposite { records } => {
                let mut p = msg::request(RequestType::IPatch, "/");
                p.payload = content::encode_composite(format, records)?;
                set_format(&mut p, CoapOption::ContentFormat, format);
                p
            }
        };
        p.header.code = match p.header.code {
            c @ MessageClass::Request(_) => c,
            _ => MessageClass::Request(RequestType::Get),
        };
        Ok(p)
    }

    /// Reads a request as the client role receives it. Returns the request and the format
    /// the server asked for (Accept), if any.
    pub fn from_coap(
        packet: &Packet,
        schema: &dyn Schema,
    ) -> Result<(Self, Option<ContentFormat>), Lwm2mError> {
        let path = request_path(packet)?;
        let accept = option_format(packet, CoapOption::Accept)?;
        let format = option_format(packet, CoapOption::ContentFormat)?;
        let has_payload = !packet.payload.is_empty();
        let payload_format = || {
            format.ok_or_else(|| Lwm2mError::BadRequest("payload without Content-Format".into()))
        };
        let req = match packet.header.code {
            MessageClass::Request(RequestType::Get) => {
                if path.is_root() {
                    return Err(Lwm2mError::MethodNotAllowed);
                }
                if accept == Some(ContentFormat::LinkFormat) {
                    DownlinkRequest::Discover { path }
                } else if reporting::registers_observation(packet) {
                    DownlinkRequest::Observe { path }
                } else {
                    DownlinkRequest::Read { path }
                }
            }
            // Write-Attributes carries its attributes in the query and has no payload and no
            // Content-Format; an empty PUT with a Content-Format is a Write.
            MessageClass::Request(RequestType::Put) if !has_payload && format.is_none() => {
                let query = msg::uri_query(packet);
                let items: Vec<&str> = query.iter().map(String::as_str).collect();
                let (attributes, remove) = NotificationAttributes::from_query_with_removals(&items)
                    .map_err(|e| Lwm2mError::BadRequest(e.to_string()))?;
                DownlinkRequest::WriteAttributes {
                    path,
                    attributes,
                    remove,
                }
            }
            MessageClass::Request(RequestType::Put) => {
                let node = content::decode(payload_format()?, &path, &packet.payload, schema)?;
                DownlinkRequest::Write {
                    path,
                    mode: WriteMode::Replace,
                    node,
                }
            }
            MessageClass::Request(RequestType::Post) => match path.level() {
                PathLevel::Object => {
                    let node = if has_payload {
                        content::decode(payload_format()?, &path, &packet.payload, schema)?
                    } else {
                        Node::Object(Default::default())
                    };
                    DownlinkRequest::Create { path, node }
                }
                PathLevel::Instance => {
                    let node = content::decode(payload_format()?, &path, &packet.payload, schema)?;
                    DownlinkRequest::Write {
                        path,
                        mode: WriteMode::Update,
                        node,
                    }
                }
                PathLevel::Resource if format.is_some_and(|f| f != ContentFormat::Text) => {
                    let node = content::decode(payload_format()?, &path, &packet.payload, schema)?;
                    DownlinkRequest::Write {
                        path,
                        mode: WriteMode::Update,
                        node,
                    }
                }
                PathLevel::Resource => {
                    let args = if has_payload {
                        Some(String::from_utf8(packet.payload.clone()).map_err(|_| {
                            Lwm2mError::BadRequest("arguments are not UTF-8".into())
                        })?)
                    } else {
                        None
                    };
                    DownlinkRequest::Execute { path, args }
                }
                _ => return Err(Lwm2mError::MethodNotAllowed),
            },
            MessageClass::Request(RequestType::Delete) => DownlinkRequest::Delete { path },
            MessageClass::Request(RequestType::Fetch) => {
                let records =
                    content::decode_composite(payload_format()?, &packet.payload, schema)?;
                let paths = composite_paths(records);
                if reporting::registers_observation(packet) {
                    DownlinkRequest::ObserveComposite { paths }
                } else {
                    DownlinkRequest::ReadComposite { paths }
                }
            }
            MessageClass::Request(RequestType::IPatch) => {
                let records =
                    content::decode_composite(payload_format()?, &packet.payload, schema)?;
                DownlinkRequest::WriteComposite { records }
            }
            _ => return Err(Lwm2mError::MethodNotAllowed),
        };
        Ok((req, accept))
    }

    /// Reads the answer to this request.
    pub fn parse_response(
        &self,
        response: &Packet,
        schema: &dyn Schema,
    ) -> Result<DmResponse, Lwm2mError> {
        if let Some(e) = Lwm2mError::from_response(response) {
            return Err(e);
        }
        let code = response.header.code;
        let expect = |want: ResponseType| {
            if code == MessageClass::Response(want) {
                Ok(())
            } else {
                Err(Lwm2mError::Other(format!(
                    "unexpected {code} to {}",
                    self.name()
                )))
            }
        };
        let format = || {
            option_format(response, CoapOption::ContentFormat)
                .map_err(|e| Lwm2mError::Other(e.to_string()))?
                .ok_or_else(|| Lwm2mError::Other("response without Content-Format".into()))
        };
        let bad = |e: content::CodecError| Lwm2mError::Other(format!("undecodable response: {e}"));
        Ok(match self {
            DownlinkRequest::Read { path } | DownlinkRequest::Observe { path } => {
                expect(ResponseType::Content)?;
                let format = format()?;
                DmResponse::Content {
                    format,
                    node: content::decode(format, path, &response.payload, schema).map_err(bad)?,
                }
            }
            DownlinkRequest::ReadComposite { .. } | DownlinkRequest::ObserveComposite { .. } => {
                expect(ResponseType::Content)?;
                let format = format()?;
                DmResponse::Composite {
                    format,
                    records: content::decode_composite(format, &response.payload, schema)
                        .map_err(bad)?,
                }
            }
            DownlinkRequest::Discover { .. } => {
                expect(ResponseType::Content)?;
                DmResponse::Links(decode_discover(&response.payload).map_err(bad)?)
            }
            DownlinkRequest::Write { .. }
            | DownlinkRequest::WriteAttributes { .. }
            | DownlinkRequest::Execute { .. }
            | DownlinkRequest::WriteComposite { .. } => {
                expect(ResponseType::Changed)?;
                DmResponse::Changed
            }
            DownlinkRequest::Create { path: object, .. } => {
                expect(ResponseType::Created)?;
                // Core §6.3.6: the Location-Path names the new instance, `/{object}/{id}`;
                // anything else (the root, another object, a resource) names none.
                let loc = msg::location_path(response);
                DmResponse::Created(Path::parse(&loc).ok().filter(|p| {
                    p.level() == PathLevel::Instance && p.object_id() == object.object_id()
                }))
            }
            DownlinkRequest::Delete { .. } => {
                expect(ResponseType::Deleted)?;
                DmResponse::Deleted
            }
        })
    }

    /// The operation's name, for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            DownlinkRequest::Read { .. } => "read",
            DownlinkRequest::Discover { .. } => "discover",
            DownlinkRequest::Write { .. } => "write",
            DownlinkRequest::WriteAttributes { .. } => "write-attr",
            DownlinkRequest::Execute { .. } => "execute",
            DownlinkRequest::Create { .. } => "create",
            DownlinkRequest::Delete { .. } => "delete",
            DownlinkRequest::ReadComposite { .. } => "read-composite",
            DownlinkRequest::WriteComposite { .. } => "write-composite",
            DownlinkRequest::Observe { .. } => "observe",
            DownlinkRequest::ObserveComposite { .. } => "observe-composite",
        }
    }
}

impl DmResponse {
    /// The CoAP response for this answer. `path` is the request's path, needed to encode a
    /// node; `format` the format to encode content in.
    pub fn to_coap(&self, path: &Path, format: ContentFormat) -> Result<Packet, Lwm2mError> {
        Ok(match self {
            DmResponse::Content { node, .. } => {
                let mut p = msg::response(ResponseType::Content);
                p.payload = content::encode(format, path, node)
                    .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
                set_format(&mut p, CoapOption::ContentFormat, format);
                p
            }
            DmResponse::Composite { records, .. } => {
                let mut p = msg::response(ResponseType::Content);
                p.payload = content::encode_composite(format, records)
                    .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
                set_format(&mut p, CoapOption::ContentFormat, format);
                p
            }
            DmResponse::Links(entries) => {
                let mut p = msg::response(ResponseType::Content);
                p.payload = encode_discover(entries).into_bytes();
                set_format(&mut p, CoapOption::ContentFormat, ContentFormat::LinkFormat);
                p
            }
            DmResponse::Changed => msg::response(ResponseType::Changed),
            DmResponse::Created(loc) => {
                let mut p = msg::response(ResponseType::Created);
                if let Some(l) = loc {
                    for id in l.ids() {
                        p.add_option(CoapOption::LocationPath, id.to_string().into_bytes());
                    }
                }
                p
            }
            DmResponse::Deleted => msg::response(ResponseType::Deleted),
        })
    }
}

#[cfg(test)]
#[path = "dm_tests.rs"]
mod tests;
