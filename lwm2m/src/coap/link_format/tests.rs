//! RFC 6690 examples, LwM2M registration and Discover payloads, hostile input and
//! round-trip properties for the link-format codec.
use super::*;
use proptest::prelude::*;

type TestResult = Result<(), LinkFormatError>;

const REGISTRATION: &str =
    r#"</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1,</3303/0>,</3303/1>"#;

#[test]
fn parses_rfc6690_sensor_example() -> TestResult {
    let links = parse(
        br#"</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor""#,
    )?;
    assert_eq!(
        links,
        vec![
            Link::new("/sensors/temp")
                .with_attr("rt", Some("temperature-c"))
                .with_attr("if", Some("sensor")),
            Link::new("/sensors/light")
                .with_attr("rt", Some("light-lux"))
                .with_attr("if", Some("sensor")),
        ]
    );
    Ok(())
}

#[test]
fn parses_rfc6690_anchor_and_rel_example_with_line_breaks() -> TestResult {
    // RFC 6690 §5 prints its examples with a line break after each comma.
    let payload = "</sensors>;ct=40;title=\"Sensor Index\",\r\n\
         </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\r\n\
         </sensors/light>;rt=\"light-lux\";if=\"sensor\",\r\n\
         <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";rel=\"describedby\",\r\n\
         </t>;anchor=\"/sensors/temp\";rel=\"alternate\"";
    let links = parse_str(payload)?;
    assert_eq!(links.len(), 5);
    assert_eq!(
        links.first().and_then(|l| l.attr("title")),
        Some("Sensor Index")
    );
    assert_eq!(links.first().map(Link::content_formats), Some(vec![40]));
    let t123 = Link::new("http://www.example.com/sensors/t123")
        .with_attr("anchor", Some("/sensors/temp"))
        .with_attr("rel", Some("describedby"));
    assert_eq!(links.get(3), Some(&t123));
    assert_eq!(
        links.get(4),
        Some(
            &Link::new("/t")
                .with_attr("anchor", Some("/sensors/temp"))
                .with_attr("rel", Some("alternate"))
        )
    );
    assert_eq!(
        serialize(&[t123]),
        r#"<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel="describedby""#
    );
    Ok(())
}

#[test]
fn parses_registration_payload_with_rt_and_ct() -> TestResult {
    let links = parse(REGISTRATION.as_bytes())?;
    assert_eq!(
        links,
        vec![
            Link::new("/")
                .with_attr("rt", Some("oma.lwm2m"))
                .with_attr("ct", Some("11543")),
            Link::new("/1/0"),
            Link::new("/3/0").with_attr("ver", Some("1.1")),
            Link::new("/3303/0"),
            Link::new("/3303/1"),
        ]
    );
    let root = links.first();
    assert_eq!(root.map(Link::content_formats), Some(vec![11543]));
    assert_eq!(links.get(2).and_then(Link::lwm2m_version), Some("1.1"));
    Ok(())
}

#[test]
fn registration_payload_round_trips_byte_exact() -> TestResult {
    assert_eq!(serialize(&parse_str(REGISTRATION)?), REGISTRATION);
    let short = r#"</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1"#;
    assert_eq!(serialize(&parse_str(short)?), short);
    Ok(())
}

#[test]
fn parses_quoted_multi_value_ct_list() -> TestResult {
    let links = parse_str(r#"</>;rt="oma.lwm2m";ct="60 110 112 11543""#)?;
    let root = links.first();
    assert_eq!(root.and_then(|l| l.attr("ct")), Some("60 110 112 11543"));
    assert_eq!(
        root.map(Link::content_formats),
        Some(vec![60, 110, 112, 11543])
    );
    assert_eq!(
        serialize(&links),
        r#"</>;rt="oma.lwm2m";ct="60 110 112 11543""#,
        "a ct list is written quoted"
    );
    Ok(())
}

#[test]
fn content_formats_skip_garbage_entries() {
    let link = Link::new("/")
        .with_attr("ct", Some("60 abc  -1 70000 110"))
        .with_attr("CT", Some("112"))
        .with_attr("ct", None);
    assert_eq!(link.content_formats(), vec![60, 110, 112]);
    assert_eq!(Link::new("/").content_formats(), Vec::<u16>::new());
}

#[test]
fn tolerates_whitespace_around_separators() -> TestResult {
    let links = parse_str(" </1/0>, </3/0> ;\tver = 1.1 ,\n</5/0> ; obs \r\n")?;
    assert_eq!(
        links,
        vec![
            Link::new("/1/0"),
            Link::new("/3/0").with_attr("ver", Some("1.1")),
            Link::new("/5/0").with_attr("obs", None),
        ]
    );
    Ok(())
}

#[test]
fn parses_bare_obs_attribute_as_none() -> TestResult {
    let links = parse_str("</3/0/13>;obs;rt=\"x\"")?;
    let link = links.first();
    assert_eq!(
        link.and_then(|l| l.attributes.first()),
        Some(&LinkAttribute::new("obs", None))
    );
    assert!(link.is_some_and(|l| l.has_attr("obs") && l.has_attr("OBS")));
    assert_eq!(link.and_then(|l| l.attr("obs")), None);
    assert_eq!(link.and_then(|l| l.attr("RT")), Some("x"));
    assert_eq!(serialize(&links), "</3/0/13>;obs;rt=\"x\"");
    Ok(())
}

#[test]
fn parses_quoted_value_with_escaped_quote_and_backslash() -> TestResult {
    let links = parse_str(r#"</a>;title="say \"hi\", \\o/; \x";b=ok"#)?;
    let link = links.first();
    assert_eq!(
        link.and_then(|l| l.attr("title")),
        Some(r#"say "hi", \o/; x"#)
    );
    assert_eq!(link.and_then(|l| l.attr("b")), Some("ok"));
    assert_eq!(
        serialize(&links),
        r#"</a>;title="say \"hi\", \\o/; x";b=ok"#
    );
    Ok(())
}

#[test]
fn accepts_utf8_in_quoted_and_bare_values() -> TestResult {
    let links = parse_str("</a>;title=\"Température\";x=né")?;
    let link = links.first();
    assert_eq!(link.and_then(|l| l.attr("title")), Some("Température"));
    assert_eq!(link.and_then(|l| l.attr("x")), Some("né"));
    assert_eq!(serialize(&links), "</a>;title=\"Température\";x=\"né\"");
    Ok(())
}

#[test]
fn accepts_extended_star_attribute_names_and_ptoken_punctuation() -> TestResult {
    let links = parse_str("<>;title*=UTF-8'de'n%c3%a4chstes;u=coap://h:5683/a?b=c+d")?;
    let link = links.first();
    assert_eq!(link.map(|l| l.target.as_str()), Some(""));
    assert_eq!(
        link.and_then(|l| l.attr("title*")),
        Some("UTF-8'de'n%c3%a4chstes")
    );
    assert_eq!(
        link.and_then(|l| l.attr("u")),
        Some("coap://h:5683/a?b=c+d")
    );
    Ok(())
}

#[test]
fn empty_value_is_kept_and_written_quoted() -> TestResult {
    let links = parse_str(r#"</a>;x=;y="""#)?;
    let link = links.first();
    assert_eq!(link.and_then(|l| l.attr("x")), Some(""));
    assert_eq!(link.and_then(|l| l.attr("y")), Some(""));
    assert_eq!(serialize(&links), r#"</a>;x="";y="""#);
    Ok(())
}

#[test]
fn empty_or_blank_payload_parses_to_no_links() -> TestResult {
    assert_eq!(parse(b"")?, Vec::new());
    assert_eq!(parse(b" \r\n\t")?, Vec::new());
    assert_eq!(serialize(&[]), "");
    Ok(())
}

#[test]
fn serializer_quotes_conventional_attributes_and_leaves_numbers_bare() {
    let link = Link::new("/3/0")
        .with_attr("rt", Some("a"))
        .with_attr("if", Some("b"))
        .with_attr("rel", Some("c"))
        .with_attr("anchor", Some("/d"))
        .with_attr("title", Some("e"))
        .with_attr("rev", Some("f"))
        .with_attr("type", Some("g"))
        .with_attr("ct", Some("40"))
        .with_attr("pmin", Some("1"))
        .with_attr("pmax", Some("2"))
        .with_attr("gt", Some("3.5"))
        .with_attr("lt", Some("-4"))
        .with_attr("st", Some("0.5"))
        .with_attr("epmin", Some("5"))
        .with_attr("epmax", Some("6"))
        .with_attr("ver", Some("1.2"))
        .with_attr("ssid", Some("101"))
        .with_attr("dim", Some("8"));
    assert_eq!(
        link.to_string(),
        r#"</3/0>;rt="a";if="b";rel="c";anchor="/d";title="e";rev="f";type="g";ct=40;pmin=1;pmax=2;gt=3.5;lt=-4;st=0.5;epmin=5;epmax=6;ver=1.2;ssid=101;dim=8"#
    );
}

#[test]
fn display_matches_serialize_for_one_link() {
    let link = Link::new("/1/0")
        .with_attr("ssid", Some("1"))
        .with_attr("obs", None);
    assert_eq!(link.to_string(), serialize(std::slice::from_ref(&link)));
    assert_eq!(link.to_string(), "</1/0>;ssid=1;obs");
}

#[test]
fn serializer_percent_encodes_angle_brackets_in_targets() -> TestResult {
    let text = serialize(&[Link::new("/a<b>c")]);
    assert_eq!(text, "</a%3Cb%3Ec>");
    assert_eq!(parse_str(&text)?, vec![Link::new("/a%3Cb%3Ec")]);
    Ok(())
}

#[test]
fn rejects_missing_opening_angle_bracket() {
    assert_eq!(
        parse(b"/1/0>"),
        Err(LinkFormatError::MissingTargetStart { position: 0 })
    );
    assert_eq!(
        parse(b"</1/0>, /3/0>"),
        Err(LinkFormatError::MissingTargetStart { position: 8 })
    );
}

#[test]
fn rejects_trailing_comma() {
    assert_eq!(
        parse(b"</1/0>,"),
        Err(LinkFormatError::MissingTargetStart { position: 7 })
    );
}

#[test]
fn rejects_missing_closing_angle_bracket() {
    assert_eq!(
        parse(b"</1/0"),
        Err(LinkFormatError::UnterminatedTarget { position: 0 })
    );
    // Without the `<` check this would parse as one link whose target
    // swallowed the next one.
    assert_eq!(
        parse(b"</1/0>,</3/0;ver=1.1,</5/0>"),
        Err(LinkFormatError::UnterminatedTarget { position: 7 })
    );
}

#[test]
fn rejects_unterminated_quoted_string() {
    assert_eq!(
        parse(br#"</>;rt="oma.lwm2m"#),
        Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
    );
    assert_eq!(
        parse(br#"</>;rt="a\"#),
        Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
    );
    assert_eq!(
        parse(br#"</>;rt="a\""#),
        Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
    );
}

#[test]
fn rejects_empty_attribute_name() {
    assert_eq!(
        parse(b"</1/0>;=5"),
        Err(LinkFormatError::EmptyAttributeName { position: 7 })
    );
    assert_eq!(
        parse(b"</1/0>;,</2/0>"),
        Err(LinkFormatError::EmptyAttributeName { position: 7 })
    );
    assert_eq!(
        parse(b"</1/0>;"),
        Err(LinkFormatError::EmptyAttributeName { position: 7 })
    );
}

#[test]
fn rejects_invalid_utf8_with_its_position() {
    let err = parse(b"</1/0>;title=\"\xff\"");
    assert_eq!(err, Err(LinkFormatError::InvalidUtf8 { position: 14 }));
    assert_eq!(err.err().map(|e| e.position()), Some(14));
}

#[test]
fn rejects_garbage_between_links() {
    assert_eq!(
        parse_str("</1/0> x"),
        Err(LinkFormatError::UnexpectedCharacter {
            found: 'x',
            position: 7
        })
    );
    assert_eq!(
        parse_str("</1/0>;rt=a b"),
        Err(LinkFormatError::UnexpectedCharacter {
            found: 'b',
            position: 12
        })
    );
    assert_eq!(
        parse_str(r#"</1/0>;rt="a"b"#),
        Err(LinkFormatError::UnexpectedCharacter {
            found: 'b',
            position: 13
        })
    );
}

#[test]
fn rejects_value_over_the_cap_and_accepts_one_at_it() -> TestResult {
    let at_cap = "a".repeat(MAX_VALUE_LEN);
    let links = parse_str(&format!("</>;x={at_cap};y=\"{at_cap}\""))?;
    let link = links.first();
    assert_eq!(
        link.and_then(|l| l.attr("x")).map(str::len),
        Some(MAX_VALUE_LEN)
    );
    assert_eq!(
        link.and_then(|l| l.attr("y")).map(str::len),
        Some(MAX_VALUE_LEN)
    );

    let over = "a".repeat(MAX_VALUE_LEN + 1);
    let too_long = Err(LinkFormatError::ValueTooLong {
        position: 6,
        max: MAX_VALUE_LEN,
    });
    assert_eq!(parse_str(&format!("</>;x={over}")), too_long);
    assert_eq!(parse_str(&format!("</>;x=\"{over}\"")), too_long);
    // Escapes count after unescaping, and the cap trips on the escape too.
    let escaped_over = format!("</>;x=\"{}\\\"\"", "a".repeat(MAX_VALUE_LEN));
    assert_eq!(parse_str(&escaped_over), too_long);
    Ok(())
}

#[test]
fn rejects_more_links_than_the_cap() -> TestResult {
    let at_cap = vec!["<>"; MAX_LINKS].join(",");
    assert_eq!(parse_str(&at_cap)?.len(), MAX_LINKS);
    let over = format!("{at_cap},<>");
    assert_eq!(
        parse_str(&over),
        Err(LinkFormatError::TooManyLinks {
            position: at_cap.len() + 1,
            max: MAX_LINKS
        })
    );
    Ok(())
}

#[test]
fn syntax_errors_report_a_position() {
    assert_eq!(
        LinkFormatError::UnterminatedTarget { position: 3 }.position(),
        3
    );
}

fn link_strategy() -> impl Strategy<Value = Link> {
    let name = "[A-Za-z0-9!#$&+.^_`|~-]{1,8}";
    let value = prop_oneof![
        "[ -~]{0,16}",
        "[a-z0-9.:/+-]{1,8}",
        "\\PC{0,12}",
        Just(r#"\""#.to_owned()),
    ];
    let attribute =
        (name, proptest::option::of(value)).prop_map(|(name, value)| LinkAttribute { name, value });
    (
        "/[0-9a-z/._-]{0,20}",
        proptest::collection::vec(attribute, 0..5),
    )
        .prop_map(|(target, attributes)| Link { target, attributes })
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_link_format_like_text(
        text in r#"[<>;=,"\\ \t/a-z0-9.*é]{0,96}"#,
    ) {
        if let Err(e) = parse_str(&text) {
            prop_assert!(e.position() <= text.len());
        }
    }

    #[test]
    fn serialize_then_parse_round_trips(
        links in proptest::collection::vec(link_strategy(), 0..6),
    ) {
        let text = serialize(&links);
        prop_assert_eq!(parse_str(&text), Ok(links));
    }

}
