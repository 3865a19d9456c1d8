//! The command of each step of a device's firmware update (OMA LwM2M TS 1.2 Core E.6):
//! reads of `/3/0/1`, `/3/0/3`, `/5/0/3`, `/5/0/5`, observations of the last two, the Package
//! URI (`/5/0/1`) or the Package itself (`/5/0/0`, RFC 7959 Block1), Execute of Update
//! (`/5/0/2`), and the empty write that cancels a download.
use super::device::{DeviceUpdate, Step};
use super::{CampaignId, Campaigns, Method, RESULT, STATE};
use crate::bridge::sink::CommandPath;
use crate::core::types::{Command, UploadOptions};
use lwm2m::model::{Node, Path, Resource, Value};
use lwm2m::ops::dm::{DownlinkRequest, WriteMode};
use std::time::Duration;

impl Campaigns {
    /// Submits the command of one step.
    pub(super) fn run(
        &mut self,
        id: CampaignId,
        d: &DeviceUpdate,
        step: Step,
        path: &mut dyn CommandPath,
    ) {
        let Some(c) = self.campaigns.get(&id) else {
            return;
        };
        let ep = d.endpoint.as_str();
        let read = |p: Path| DownlinkRequest::Read { path: p };
        let write = |p: Path, v: Value| DownlinkRequest::Write {
            path: p,
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(v)),
        };
        let observe = |p: Path| DownlinkRequest::Observe { path: p };
        let method = c.record.spec.method;
        let mut cmd = match step {
            Step::ReadModel => Command::new(ep, read(Path::resource(3, 0, 1))),
            Step::ReadCurrentVersion | Step::ReadNewVersion => {
                Command::new(ep, read(Path::resource(3, 0, 3)))
            }
            Step::ObserveState => Command::new(ep, observe(STATE)),
            Step::ObserveResult => Command::new(ep, observe(RESULT)),
            Step::ReadState => Command::new(ep, read(STATE)),
            Step::ReadResult => Command::new(ep, read(RESULT)),
            Step::Execute => Command::new(
                ep,
                DownlinkRequest::Execute {
                    path: Path::resource(5, 0, 2),
                    args: None,
                },
            ),
            Step::Abort => match method {
                Method::Pull => Command::new(
                    ep,
                    write(Path::resource(5, 0, 1), Value::String(String::new())),
                ),
                Method::Push => Command::new(
                    ep,
                    write(Path::resource(5, 0, 0), Value::Opaque(Vec::new())),
                ),
            },
            Step::Transfer => match method {
                Method::Pull => {
                    let base = if path.secure(ep).unwrap_or(true) {
                        &self.settings.coaps_uri
                    } else {
                        &self.settings.coap_uri
                    };
                    let uri = format!("{base}/{}/{}", self.settings.path, c.record.spec.package);
                    Command::new(ep, write(Path::resource(5, 0, 1), Value::String(uri)))
                }
                Method::Push => {
                    // A push campaign without its package was closed at restore.
                    let Some(pkg) = self.packages.get(&id) else {
                        return;
                    };
                    let szx = d
                        .szx
                        .unwrap_or_else(|| lwm2m::coap::msg::szx_of(self.settings.push_block_size));
                    let interval = Some(self.settings.push_block_interval).filter(|i| !i.is_zero());
                    Command {
                        upload: Some(UploadOptions {
                            start_block: d.next_block,
                            szx: Some(szx),
                            interval,
                        }),
                        // A push lasts as long as its blocks take, up to the phase's limit.
                        timeout: Some(
                            self.settings
                                .download_timeout
                                .min(Duration::from_secs(24 * 3600)),
                        ),
                        ..Command::new(
                            ep,
                            write(Path::resource(5, 0, 0), Value::Opaque(pkg.bytes.to_vec())),
                        )
                    }
                }
            },
        };
        if step == Step::Abort {
            // Best effort: nothing waits for its result.
            cmd.ttl = Some(self.settings.update_timeout);
            path.submit(cmd);
            return;
        }
        let cid = path.submit(cmd);
        self.commands.insert(cid, (id, ep.to_string(), step));
    }
}
