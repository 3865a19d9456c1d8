//! The requests a device sends the bootstrap server (OMA LwM2M TS 1.2 Core §6.1:
//! Bootstrap-Request `POST /bs?ep=..&pct=..`, and the Bootstrap-Pack-Request of 1.2,
//! `GET /bspack?ep=..`; Transport §6.1): who may ask, what they are answered, and the
//! sequence or pack that follows.
//!
//! Both go through the same two checks: a DTLS peer may only ask for the endpoint its
//! credential is bound to, and the embedding server's [`Accounts`](crate::Accounts) must
//! have an account for the device. Either refusal is a 4.03 and a
//! [`Failed`](Event::Failed) event at [`Step::Request`], for the audit log.
use super::BootstrapCore;
use crate::account::{Account, AccountRequest};
use crate::event::{Event, Failure, Step};
use crate::pack::{self, PACK_FORMATS};
use crate::sequence::Sequence;
use lwm2m::coap::{
    msg, CoapOption, IncomingRequest, MessageClass, Packet, Peer, RequestType, ResponseType,
};
use lwm2m::content::ContentFormat;
use lwm2m::ops::bootstrap::{BootstrapRequest, PackRequest};
use lwm2m::ops::Lwm2mError;
use std::time::Instant;

impl<P: Peer> BootstrapCore<P> {
    /// A request from a device: answered at once, then the sequence it started, if any,
    /// sends its first step (so the device has its 2.04 before the Discover).
    pub(super) fn on_request(&mut self, now: Instant, req: IncomingRequest<P>) {
        let method = match req.request.header.code {
            MessageClass::Request(m) => m,
            _ => RequestType::UnKnown,
        };
        let mut started = None;
        let response = match (msg::uri_path(&req.request).as_str(), method) {
            ("/bs", RequestType::Post) => {
                match self.bootstrap_request(now, req.peer, &req.request) {
                    Ok(id) => {
                        started = Some(id);
                        msg::response(ResponseType::Changed)
                    }
                    Err(e) => e.to_response(),
                }
            }
            ("/bspack", RequestType::Get) => self
                .pack_request(now, req.peer, &req.request)
                .unwrap_or_else(|e| e.to_response()),
            ("/bs" | "/bspack", _) => Lwm2mError::MethodNotAllowed.to_response(),
            _ => Lwm2mError::NotFound.to_response(),
        };
        if let Err(e) = self.coap.respond(now, req.id, response) {
            tracing::warn!(peer = ?req.peer, error = %e, "could not answer");
        }
        if let Some(id) = started {
            self.begin(now, id);
        }
    }

    /// A Bootstrap-Request: the id of the sequence it starts.
    fn bootstrap_request(
        &mut self,
        now: Instant,
        peer: P,
        packet: &Packet,
    ) -> Result<u64, Lwm2mError> {
        let request = BootstrapRequest::from_coap(packet)?;
        // The sequences this one replaces do not count against the bound.
        let replaced = self.running_for(peer, &request.endpoint);
        if self.sequences.len().saturating_sub(replaced.len()) >= self.config.max_sequences {
            tracing::warn!(endpoint = %request.endpoint, "bootstrap sequences at their bound: 5.03");
            return Err(Lwm2mError::ServiceUnavailable);
        }
        // A plain CoAP peer's replaced sequences were plain too (same peer, or its name).
        let plain_bound = (self.config.max_sequences / 2).max(1);
        if self.principals.get(&peer).is_none()
            && self.unauthenticated.saturating_sub(replaced.len()) >= plain_bound
        {
            tracing::warn!(endpoint = %request.endpoint, "plain CoAP bootstrap sequences at their bound: 5.03");
            return Err(Lwm2mError::ServiceUnavailable);
        }
        let account = self.account_for(peer, &request.endpoint, request.preferred_format)?;
        for id in replaced {
            self.fail(now, id, None, Failure::Gone);
        }
        let endpoint = request.endpoint;
        let seq = Sequence::new(
            endpoint.clone(),
            account,
            request.preferred_format,
            self.config.verify_server_write,
        );
        let id = self.insert(now, peer, seq);
        tracing::info!(%endpoint, ?peer, "bootstrap started");
        self.events.push_back(Event::Started { endpoint, peer });
        Ok(id)
    }

    /// The sequences running for `peer` or for `endpoint` (at most two, each once).
    fn running_for(&self, peer: P, endpoint: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = [self.by_peer.get(&peer), self.by_endpoint.get(endpoint)]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        ids.dedup();
        ids
    }

    /// A Bootstrap-Pack-Request: the whole configuration in the answer, and the device
    /// holds it as soon as it is sent (no Finish follows a pack).
    fn pack_request(
        &mut self,
        now: Instant,
        peer: P,
        packet: &Packet,
    ) -> Result<Packet, Lwm2mError> {
        if !self.config.serve_pack {
            return Err(Lwm2mError::NotFound);
        }
        let request = PackRequest::from_coap(packet)?;
        let format = match request.accept {
            None => ContentFormat::SenmlCbor,
            Some(f) if PACK_FORMATS.contains(&f) => f,
            Some(_) => return Err(Lwm2mError::NotAcceptable),
        };
        let account = self.account_for(peer, &request.endpoint, None)?;
        // A pack is answered without a round trip: over plain CoAP its sender's address is
        // unproven, and the answer would hand a credential to whoever it names (and create
        // one per forged name). Only an account without a secret goes out unauthenticated.
        if self.principals.get(&peer).is_none()
            && !matches!(account.security, crate::AccountSecurity::NoSec)
        {
            return Err(self.refuse(
                peer,
                &request.endpoint,
                "Bootstrap-Pack-Request with a credential to give needs DTLS".into(),
            ));
        }
        // The device asked afresh: whatever sequence it had running is abandoned.
        for id in self.running_for(peer, &request.endpoint) {
            self.fail(now, id, None, Failure::Gone);
        }
        let endpoint = request.endpoint;
        let payload = match pack::encode(format, &account) {
            Ok(p) => p,
            Err(e) => {
                self.events.push_back(Event::Failed {
                    endpoint,
                    peer,
                    step: Step::Pack,
                    failure: Failure::Refused(format!("the account cannot be encoded: {e}")),
                });
                return Err(Lwm2mError::InternalServerError(String::new()));
            }
        };
        let mut response = msg::response(ResponseType::Content);
        msg::set_uint_option(
            &mut response,
            CoapOption::ContentFormat,
            u32::from(format.code()),
        );
        response.payload = payload;
        tracing::info!(%endpoint, ?peer, "bootstrap pack served");
        self.events.push_back(Event::Started {
            endpoint: endpoint.clone(),
            peer,
        });
        self.events.push_back(Event::Finished {
            endpoint,
            peer,
            account,
            version: None,
            format,
        });
        Ok(response)
    }

    /// The two checks every request goes through: the name is the peer's own, and the
    /// embedding server has an account for it.
    fn account_for(
        &mut self,
        peer: P,
        endpoint: &str,
        preferred_format: Option<ContentFormat>,
    ) -> Result<Account, Lwm2mError> {
        let principal = self.principals.get(&peer).cloned();
        if let Some(p) = principal.as_deref().filter(|p| *p != endpoint) {
            tracing::warn!(
                endpoint,
                principal = p,
                ?peer,
                "bootstrap refused: endpoint name is not the credential's"
            );
            return Err(self.refuse(
                peer,
                endpoint,
                "endpoint name is not the one bound to the DTLS credential".into(),
            ));
        }
        let asked = AccountRequest {
            endpoint,
            principal: principal.as_deref(),
            preferred_format,
        };
        self.accounts.account(&asked).map_err(|refusal| {
            tracing::warn!(endpoint, ?peer, reason = %refusal, "bootstrap refused");
            self.refuse(peer, endpoint, refusal.0)
        })
    }

    /// Reports a refused request; the device is answered 4.03.
    fn refuse(&mut self, peer: P, endpoint: &str, reason: String) -> Lwm2mError {
        self.events.push_back(Event::Failed {
            endpoint: endpoint.to_string(),
            peer,
            step: Step::Request,
            failure: Failure::Refused(reason),
        });
        Lwm2mError::Forbidden
    }
}
