//! CoRE link format (RFC 6690): every device sends it at every registration and in Discover
//! answers, and its attributes become the periods and thresholds of observations, so the
//! generic parser, the registration payload reader built on it, and the notification
//! attributes (from links and from Write-Attributes queries) are all fed.
use super::same;
use lwm2m::attributes::NotificationAttributes;
use lwm2m::coap::link_format::{self, Link, MAX_LINKS};
use lwm2m::content::link::parse_registration_links;

/// The fuzz target.
pub fn link_format(data: &[u8]) {
    let parsed = link_format::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let from_str = link_format::parse_str(text);
        assert_eq!(from_str, parsed);
        if let Err(e) = &from_str {
            // link_format's tests: an error points inside the input.
            assert!(e.position() <= text.len(), "{e:?}");
        }
    }
    if let Ok(links) = &parsed {
        assert!(links.len() <= MAX_LINKS);
        // link_format's tests: serialize then parse gives the links back.
        let text = link_format::serialize(links);
        assert_eq!(
            link_format::parse_str(&text).as_ref(),
            Ok(links),
            "{text:?}"
        );
        for link in links {
            let _ = link.content_formats();
            let _ = link.lwm2m_version();
            attributes(link);
        }
    }
    if let Ok(objects) = parse_registration_links(data) {
        // content::link's tests: registration links round-trip through to_link_format.
        let text = objects.to_link_format();
        assert_eq!(
            parse_registration_links(text.as_bytes()).as_ref(),
            Ok(&objects),
            "{text:?}"
        );
        for (path, _) in &objects.objects {
            if let (Some(o), Some(i)) = (path.object_id(), path.instance_id()) {
                assert!(objects.has_instance(o, i));
            }
        }
    }
    // The same bytes as the Uri-Query items of a Write-Attributes request.
    let query = String::from_utf8_lossy(data);
    let items: Vec<&str> = query.split('&').collect();
    if let Ok(attrs) = NotificationAttributes::from_query(&items) {
        query_round_trip(&attrs);
    }
    let _ = NotificationAttributes::from_query_with_removals(&items);
}

/// attributes' tests: notification attributes round-trip through a link and a query.
fn attributes(link: &Link) {
    let Ok(attrs) = NotificationAttributes::from_link(link) else {
        return;
    };
    let again = Link {
        target: "/3/0".to_owned(),
        attributes: attrs.to_link_attributes(),
    };
    same(&NotificationAttributes::from_link(&again), &attrs, || {
        format!("{link:?} gave {attrs:?}, written as {again:?}")
    });
    query_round_trip(&attrs);
}

fn query_round_trip(attrs: &NotificationAttributes) {
    let query = attrs.to_query();
    let items: Vec<&str> = query.iter().map(String::as_str).collect();
    same(&NotificationAttributes::from_query(&items), attrs, || {
        format!("{attrs:?} written as {query:?}")
    });
}
