//! The LwM2M notification attributes (OMA LwM2M TS 1.2 Core §5.1.2): `pmin`, `pmax`, `gt`,
//! `lt`, `st`, `epmin` and `epmax`, which a server attaches to an object, instance or
//! resource to say when an observation of it notifies.
//!
//! A server sets them with Write-Attributes as Uri-Query items (`?pmin=10&gt=20.5`, a bare
//! name removes one) and reads them back in Discover answers as link attributes
//! (`</3303/0/5700>;pmin=10;gt=20.5`). [`NotificationAttributes`] reads and writes both
//! forms; the RFC 6690 syntax around them is [`crate::coap::link_format`]'s.
//!
//! The attributes LwM2M 1.2 adds (`edge`, `con`, `hqmax`) are not interpreted: with a value
//! (`edge=1`) they are skipped, in a query and in a link, so a request carrying them still
//! sets the others; only as a bare name in Write-Attributes, which would remove one, are they
//! refused as unknown ([`NotificationAttributes::from_query_with_removals`]).
use std::str::FromStr;

use crate::coap::link_format::{Link, LinkAttribute};

/// The notification attributes of OMA LwM2M TS Core §5.1.2, by their query names.
pub const NOTIFICATION_ATTRIBUTES: [&str; 7] = ["pmin", "pmax", "gt", "lt", "st", "epmin", "epmax"];

/// Why a notification attribute was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// An attribute was given without `=value`.
    #[error("attribute `{name}` needs a value")]
    MissingValue {
        /// The attribute name as given.
        name: String,
    },
    /// An attribute's value is not a valid number for it.
    #[error("invalid value {value:?} for attribute `{name}`")]
    InvalidValue {
        /// The attribute name as given.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// An attribute was given more than once.
    #[error("attribute `{name}` is given more than once")]
    DuplicateAttribute {
        /// The attribute name as given.
        name: String,
    },
}

/// The notification attributes of a path (Core §5.1.2), as Write-Attributes sets them and
/// Discover reports them. `None` is an attribute that is not set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationAttributes {
    /// Minimum period between notifications, in seconds.
    pub pmin: Option<u32>,
    /// Maximum period between notifications, in seconds.
    pub pmax: Option<u32>,
    /// Greater-than threshold: notify when the value crosses above it.
    pub gt: Option<f64>,
    /// Less-than threshold: notify when the value crosses below it.
    pub lt: Option<f64>,
    /// Step: notify when the value changed by at least this much.
    pub st: Option<f64>,
    /// Minimum evaluation period, in seconds.
    pub epmin: Option<u32>,
    /// Maximum evaluation period, in seconds.
    pub epmax: Option<u32>,
}

impl NotificationAttributes {
    /// Reads the notification attributes of a Discover link.
    ///
    /// Other attributes (`dim`, `ver`, ...) are ignored; a notification
    /// attribute without a value, with a malformed or non-finite number, or
    /// given twice is an error.
    ///
    /// # Errors
    ///
    /// [`AttributeError::MissingValue`], [`AttributeError::InvalidValue`] or
    /// [`AttributeError::DuplicateAttribute`] for the first bad attribute.
    pub fn from_link(link: &Link) -> Result<Self, AttributeError> {
        let mut attrs = Self::default();
        for attr in &link.attributes {
            attrs.apply(&attr.name, attr.value.as_deref())?;
        }
        Ok(attrs)
    }

    /// The attributes that are set, in the order pmin, pmax, gt, lt, st,
    /// epmin, epmax.
    pub fn to_link_attributes(&self) -> Vec<LinkAttribute> {
        self.entries()
            .into_iter()
            .map(|(name, value)| LinkAttribute {
                name: name.to_owned(),
                value: Some(value),
            })
            .collect()
    }

    /// Reads the Uri-Query items of a Write-Attributes request, such as
    /// `pmin=10` or `gt=20.5`.
    ///
    /// Items naming other attributes are ignored, so attributes of later
    /// LwM2M versions (`edge`, `con`, ...) do not fail the request. A bare
    /// `pmin` (the "unset" form) is out of scope and rejected as
    /// [`AttributeError::MissingValue`].
    ///
    /// # Errors
    ///
    /// [`AttributeError::MissingValue`], [`AttributeError::InvalidValue`] or
    /// [`AttributeError::DuplicateAttribute`] for the first bad item.
    pub fn from_query(query: &[&str]) -> Result<Self, AttributeError> {
        let mut attrs = Self::default();
        for item in query {
            match item.split_once('=') {
                Some((name, value)) => attrs.apply(name, Some(value))?,
                None => attrs.apply(item, None)?,
            }
        }
        Ok(attrs)
    }

    /// Reads a Write-Attributes query in which a bare name (`pmin`, no value) removes that
    /// attribute (OMA LwM2M TS Core §5.1.2). Returns the attributes to set and the names to
    /// remove (lower case); an unknown bare name is refused.
    pub fn from_query_with_removals(query: &[&str]) -> Result<(Self, Vec<String>), AttributeError> {
        let mut attrs = Self::default();
        let mut removed = Vec::new();
        for item in query {
            match item.split_once('=') {
                Some((name, value)) => attrs.apply(name, Some(value))?,
                None => {
                    let name = item.to_ascii_lowercase();
                    if !NOTIFICATION_ATTRIBUTES.contains(&name.as_str()) {
                        return Err(AttributeError::MissingValue { name });
                    }
                    if !removed.contains(&name) {
                        removed.push(name);
                    }
                }
            }
        }
        Ok((attrs, removed))
    }

    /// The attributes that are set as Uri-Query items (`name=value`), in the
    /// same order as [`Self::to_link_attributes`].
    pub fn to_query(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }

    /// Whether no attribute is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Set attributes with their wire form; `f64`'s `Display` is the
    /// shortest text that parses back to the same number and never uses an
    /// exponent, so every value is a valid bare ptoken.
    fn entries(&self) -> Vec<(&'static str, String)> {
        let ints = |v: Option<u32>| v.map(|v| v.to_string());
        let floats = |v: Option<f64>| v.map(|v| v.to_string());
        [
            ("pmin", ints(self.pmin)),
            ("pmax", ints(self.pmax)),
            ("gt", floats(self.gt)),
            ("lt", floats(self.lt)),
            ("st", floats(self.st)),
            ("epmin", ints(self.epmin)),
            ("epmax", ints(self.epmax)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), AttributeError> {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        let any = |_: &u32| true;
        let finite = |v: &f64| v.is_finite();
        if is("pmin") {
            set(&mut self.pmin, name, value, any)
        } else if is("pmax") {
            set(&mut self.pmax, name, value, any)
        } else if is("gt") {
            set(&mut self.gt, name, value, finite)
        } else if is("lt") {
            set(&mut self.lt, name, value, finite)
        } else if is("st") {
            set(&mut self.st, name, value, finite)
        } else if is("epmin") {
            set(&mut self.epmin, name, value, any)
        } else if is("epmax") {
            set(&mut self.epmax, name, value, any)
        } else {
            Ok(())
        }
    }
}

/// Parses one notification attribute into its slot. `valid` exists because
/// `f64::from_str` accepts `NaN` and `inf`, which no threshold can be.
fn set<T: FromStr>(
    slot: &mut Option<T>,
    name: &str,
    value: Option<&str>,
    valid: impl Fn(&T) -> bool,
) -> Result<(), AttributeError> {
    if slot.is_some() {
        return Err(AttributeError::DuplicateAttribute {
            name: name.to_owned(),
        });
    }
    let value = value.ok_or_else(|| AttributeError::MissingValue {
        name: name.to_owned(),
    })?;
    let parsed = value
        .parse::<T>()
        .ok()
        .filter(|v| valid(v))
        .ok_or_else(|| AttributeError::InvalidValue {
            name: name.to_owned(),
            value: value.to_owned(),
        })?;
    *slot = Some(parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::link_format::{parse_str, serialize};
    use proptest::prelude::*;

    type TestResult = Result<(), AttributeError>;

    #[test]
    fn parses_discover_answer_with_notification_attributes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let payload = "</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/7>;dim=8,</3/0/13>;gt=50.5";
        let links = parse_str(payload)?;
        assert_eq!(links.len(), 4);
        assert_eq!(
            serialize(&links),
            payload,
            "numeric attributes stay unquoted"
        );

        let object = links
            .first()
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert_eq!(
            object,
            Some(NotificationAttributes {
                pmin: Some(10),
                pmax: Some(60),
                ..Default::default()
            })
        );
        assert_eq!(links.get(2).and_then(|l| l.attr("dim")), Some("8"));
        let dim_only = links
            .get(2)
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert!(
            dim_only.is_some_and(|a| a.is_empty()),
            "dim is not a notification attribute"
        );
        let gt = links
            .get(3)
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert_eq!(gt.and_then(|a| a.gt), Some(50.5));
        Ok(())
    }

    #[test]
    fn notification_attributes_from_query() -> TestResult {
        let attrs = NotificationAttributes::from_query(&[
            "pmin=10", "pmax=60", "gt=20.5", "lt=-3", "st=0.25", "epmin=1", "epmax=30", "edge=1",
        ])?;
        assert_eq!(
            attrs,
            NotificationAttributes {
                pmin: Some(10),
                pmax: Some(60),
                gt: Some(20.5),
                lt: Some(-3.0),
                st: Some(0.25),
                epmin: Some(1),
                epmax: Some(30),
            }
        );
        assert_eq!(
            attrs.to_query(),
            vec!["pmin=10", "pmax=60", "gt=20.5", "lt=-3", "st=0.25", "epmin=1", "epmax=30"]
        );
        Ok(())
    }

    #[test]
    fn notification_floats_use_shortest_display() {
        let attrs = NotificationAttributes {
            gt: Some(20.0),
            lt: Some(20.5),
            ..Default::default()
        };
        assert_eq!(attrs.to_query(), vec!["gt=20", "lt=20.5"]);
        assert_eq!(
            attrs.to_link_attributes(),
            vec![
                LinkAttribute::new("gt", Some("20")),
                LinkAttribute::new("lt", Some("20.5")),
            ]
        );
    }

    #[test]
    fn notification_attributes_keep_spec_order_in_links() {
        let attrs = NotificationAttributes {
            epmax: Some(7),
            st: Some(1.5),
            pmin: Some(1),
            ..Default::default()
        };
        let link = Link {
            target: "/3303/0/5700".to_owned(),
            attributes: attrs.to_link_attributes(),
        };
        assert_eq!(link.to_string(), "</3303/0/5700>;pmin=1;st=1.5;epmax=7");
    }

    #[test]
    fn notification_attributes_reject_bare_pmin_query() {
        assert_eq!(
            NotificationAttributes::from_query(&["pmin"]),
            Err(AttributeError::MissingValue {
                name: "pmin".to_owned()
            })
        );
        assert_eq!(
            NotificationAttributes::from_link(&Link::new("/3/0").with_attr("gt", None)),
            Err(AttributeError::MissingValue {
                name: "gt".to_owned()
            })
        );
    }

    #[test]
    fn notification_attributes_reject_bad_numbers() {
        for (item, name, value) in [
            ("pmin=-1", "pmin", "-1"),
            ("pmax=1.5", "pmax", "1.5"),
            ("epmin=", "epmin", ""),
            ("epmax=4294967296", "epmax", "4294967296"),
            ("gt=NaN", "gt", "NaN"),
            ("lt=inf", "lt", "inf"),
            ("st=1e400", "st", "1e400"),
            ("gt=abc", "gt", "abc"),
        ] {
            assert_eq!(
                NotificationAttributes::from_query(&[item]),
                Err(AttributeError::InvalidValue {
                    name: name.to_owned(),
                    value: value.to_owned()
                }),
                "{item}"
            );
        }
    }

    #[test]
    fn notification_attributes_reject_duplicates() {
        assert_eq!(
            NotificationAttributes::from_query(&["pmin=1", "PMIN=2"]),
            Err(AttributeError::DuplicateAttribute {
                name: "PMIN".to_owned()
            })
        );
    }

    #[test]
    fn notification_attributes_empty_by_default() {
        assert!(NotificationAttributes::default().is_empty());
        assert!(NotificationAttributes::default().to_query().is_empty());
        assert!(NotificationAttributes::default()
            .to_link_attributes()
            .is_empty());
        assert!(!NotificationAttributes {
            st: Some(0.0),
            ..Default::default()
        }
        .is_empty());
    }

    fn finite_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1_000_000i32..1_000_000).prop_map(|v| f64::from(v) / 4.0),
        ]
    }

    fn notification_strategy() -> impl Strategy<Value = NotificationAttributes> {
        use proptest::option::of;
        (
            of(any::<u32>()),
            of(any::<u32>()),
            of(finite_f64()),
            of(finite_f64()),
            of(finite_f64()),
            of(any::<u32>()),
            of(any::<u32>()),
        )
            .prop_map(
                |(pmin, pmax, gt, lt, st, epmin, epmax)| NotificationAttributes {
                    pmin,
                    pmax,
                    gt,
                    lt,
                    st,
                    epmin,
                    epmax,
                },
            )
    }

    proptest! {
        #[test]
        fn notification_attributes_round_trip_through_query(attrs in notification_strategy()) {
            let query = attrs.to_query();
            let items: Vec<&str> = query.iter().map(String::as_str).collect();
            prop_assert_eq!(NotificationAttributes::from_query(&items), Ok(attrs));
        }

        #[test]
        fn notification_attributes_round_trip_through_link(attrs in notification_strategy()) {
            let link = Link { target: "/3/0".to_owned(), attributes: attrs.to_link_attributes() };
            prop_assert_eq!(NotificationAttributes::from_link(&link), Ok(attrs.clone()));
            let reparsed = parse_str(&link.to_string())?;
            prop_assert_eq!(reparsed.first().map(NotificationAttributes::from_link), Some(Ok(attrs)));
        }
    }
}
