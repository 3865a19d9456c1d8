//! What the bootstrap core reports: a sequence started, finished (with the account the
//! device now holds), or failed (at which step, and why).
use crate::account::Account;
use lwm2m::content::ContentFormat;
use lwm2m::model::Path;

/// A step of a bootstrap sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The device's Bootstrap-Request (or Bootstrap-Pack-Request) itself.
    Request,
    /// Bootstrap-Discover of a path.
    Discover(Path),
    /// Bootstrap-Read of a path.
    Read(Path),
    /// Bootstrap-Delete of a path.
    Delete(Path),
    /// Bootstrap-Write of a path.
    Write(Path),
    /// Bootstrap-Finish.
    Finish,
    /// Bootstrap-Pack (1.2): the whole configuration in one answer.
    Pack,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request => f.write_str("request"),
            Self::Discover(p) => write!(f, "discover {p}"),
            Self::Read(p) => write!(f, "read {p}"),
            Self::Delete(p) => write!(f, "delete {p}"),
            Self::Write(p) => write!(f, "write {p}"),
            Self::Finish => f.write_str("finish"),
            Self::Pack => f.write_str("pack"),
        }
    }
}

/// Why a sequence failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The device answered a step with an error code (`4.04`, `4.06`...).
    #[error("the device answered {code}")]
    Code {
        /// The CoAP code, dotted.
        code: String,
    },
    /// The device did not answer a step (CoAP retransmissions exhausted), or the sequence
    /// took longer than it may.
    #[error("the device did not answer")]
    Timeout,
    /// The device's answer could not be read.
    #[error("unreadable answer: {0}")]
    Malformed(String),
    /// The bootstrap server refused the device (no account for it, a name that is not its
    /// credential's).
    #[error("refused: {0}")]
    Refused(String),
    /// The device's session ended, or it started over, before the sequence finished.
    #[error("the device went away")]
    Gone,
}

/// What happened to a device's bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<P> {
    /// A device asked to be bootstrapped and was accepted.
    Started {
        /// Its endpoint name.
        endpoint: String,
        /// Where it is.
        peer: P,
    },
    /// Every Write was accepted: once the device accepts Bootstrap-Finish it uses `account`
    /// at once, so the LwM2M server must accept the account's credential first. Finish is
    /// sent only when the embedder calls
    /// [`approve_finish`](crate::BootstrapCore::approve_finish) (or the sequence fails at
    /// Finish with [`refuse_finish`](crate::BootstrapCore::refuse_finish), or times out).
    /// Followed by exactly one [`Finished`](Self::Finished) or [`Failed`](Self::Failed) of
    /// the same sequence; after `Failed`, the credential should be taken back.
    Finishing {
        /// Its endpoint name.
        endpoint: String,
        /// Where it is.
        peer: P,
        /// The account the device holds if it accepts Finish.
        account: Account,
    },
    /// The device accepted Bootstrap-Finish (or was sent its Bootstrap-Pack): it now holds
    /// `account`, whose credential the LwM2M server must accept from now on.
    Finished {
        /// Its endpoint name.
        endpoint: String,
        /// Where it is.
        peer: P,
        /// The account written.
        account: Account,
        /// The LwM2M version the device announced in its Discover answer, if any.
        version: Option<String>,
        /// The content format the account was written in.
        format: ContentFormat,
    },
    /// The sequence failed; the device will ask again.
    Failed {
        /// Its endpoint name.
        endpoint: String,
        /// Where it is.
        peer: P,
        /// The step that failed.
        step: Step,
        /// Why.
        failure: Failure,
    },
}
