//! Property tests: no input makes the decoder, the envelope opener or the
//! resolver panic, no input disappears silently (every unit yields events or
//! rejections), and the
//! decoder's fast scanner reads an event exactly as serde_json does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use auditlake::decode::envelope::{decode_opened, open, InputFormat};
use auditlake::decode::{decode_unit, scan};
use auditlake::event::Event;
use auditlake::profiles::Profiles;
use auditlake::resolve::resolve;
use proptest::prelude::*;

const SAMPLE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"4d2b","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{"username":"system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy","groups":["system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=x"]}},"impersonatedUser":{"username":"ops-bot","groups":["bots"],"extra":{"original-user-info.impersonation-proxy.concierge.pinniped.dev":["{\"username\":\"alice\",\"groups\":[\"admins\"],\"extra\":{\"k\":[\"v\"]}}"]}},"sourceIPs":["203.0.113.7"],"objectRef":{"resource":"secrets","namespace":"prod","name":"db"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-01-01T00:00:00.000000Z","stageTimestamp":"2025-01-01T00:00:00.004000Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

fn check(text: &str, profiles: &Profiles) {
    scanner_agrees(text);
    let (mut events, mut rejections) = (0, 0);
    decode_unit(
        text,
        |d| {
            events += 1;
            let _ = resolve(&d.event, profiles);
        },
        |_| rejections += 1,
    );
    let outcomes = events + rejections;
    let is_empty_list = text.contains("\"items\":[]") || text.trim() == "[]";
    assert!(outcomes > 0 || is_empty_list, "silently dropped: {text:?}");
}

/// When the scanner reads `text` at all, serde_json must read the same event.
fn scanner_agrees(text: &str) {
    if let Some(fast) = scan::event(text) {
        match serde_json::from_str::<Event>(text) {
            Ok(slow) => assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text:?}"),
            Err(e) => panic!("scanner read what serde refuses ({e}): {text:?}"),
        }
    }
}

#[test]
fn the_sample_takes_the_fast_path() {
    // Otherwise the agreement properties below would hold vacuously.
    assert!(scan::event(SAMPLE).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        check(&s, &Profiles::builtin());
    }

    #[test]
    fn truncated_and_corrupted_events_never_panic(cut in 0usize..1200, pos in 0usize..1200, byte in 32u8..127) {
        let profiles = Profiles::builtin();
        let cut = cut.min(SAMPLE.len());
        if SAMPLE.is_char_boundary(cut) {
            check(&SAMPLE[..cut], &profiles);
        }
        let mut bytes = SAMPLE.as_bytes().to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        if let Ok(s) = String::from_utf8(bytes) {
            check(&s, &profiles);
        }
    }

    #[test]
    fn scanner_reads_corrupted_events_as_serde_does(pos in 0usize..1200, len in 0usize..4, insert in "[ -~]{0,3}|\\\\u[0-9a-fA-F]{4}|[\"\\\\:,{}\\[\\]0-9.eE+-]{1,2}") {
        // Replace a few bytes of a valid event with printable text, JSON
        // punctuation or a \u escape: most results are still JSON (as
        // different events) or almost JSON, which is where a scanner and
        // serde could disagree.
        let pos = pos % SAMPLE.len();
        let end = (pos + len).min(SAMPLE.len());
        let text = format!("{}{}{}", &SAMPLE[..pos], insert, &SAMPLE[end..]);
        scanner_agrees(&text);
    }

    #[test]
    fn scanner_reads_arbitrary_members_as_serde_does(key in "[a-zA-Z]{1,12}", value in "null|true|-?[0-9]{1,11}|\"[ -~]{0,8}\"|\\[\\]|\\{\\}|\\[null,\"x\"\\]") {
        // Any member, known or not, with a value of any JSON type.
        for key in [key.as_str(), "user", "verb", "annotations", "sourceIPs", "responseStatus", "objectRef", "requestObject"] {
            scanner_agrees(&format!("{{\"auditID\":\"a\",\"{key}\":{value}}}"));
            scanner_agrees(&format!("{{\"user\":{{\"{key}\":{value}}},\"responseStatus\":{{\"code\":{value}}}}}"));
            scanner_agrees(&format!("{{\"user\":{{\"extra\":{{\"k\":{value}}}}},\"annotations\":{{\"{key}\":{value}}}}}"));
        }
    }

    #[test]
    fn corrupted_envelopes_never_panic_or_drop_events(pos in 0usize..3000, byte in 32u8..127, which in 0usize..3) {
        let event = serde_json::Value::String(SAMPLE.to_string());
        let envelopes = [
            format!(r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logStream":"s","logEvents":[{{"id":"1","timestamp":1,"message":{event}}},{{"id":"2","timestamp":1,"message":{event}}}]}}"#),
            format!(r#"{{"records":[{{"resourceId":"/x/managedClusters/c","category":"kube-audit","properties":{{"log":{event},"pod":"p"}}}},{{"category":"kube-audit","properties":{{"log":{SAMPLE}}}}}]}}"#),
            r#"{"insertId":"i","logName":"l","operation":{"id":"o","first":true,"last":true},"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.exec.create","resourceName":"core/v1/namespaces/a/pods/b/exec","authenticationInfo":{"principalEmail":"alice","authoritySelector":"bob"},"status":{"code":7}},"resource":{"labels":{"cluster_name":"c"}},"timestamp":"2025-01-01T00:00:00.000000Z"}"#.to_string(),
        ];
        let mut bytes = envelopes[which].as_bytes().to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        match open(&text, InputFormat::Auto) {
            None => check(&text, &Profiles::builtin()),
            Some(Err(_)) => {}
            Some(Ok(mut opened)) => {
                let items = opened.items.len();
                let (mut events, mut rejections) = (0, 0);
                decode_opened(&mut opened, &mut Default::default(), |d| {
                    events += 1;
                    let _ = resolve(&d.event, &Profiles::builtin());
                }, |_| rejections += 1);
                // Each item is one event or one rejection.
                prop_assert_eq!(events + rejections, items);
                prop_assert!(items > 0 || !opened.skipped.is_empty() || text.contains("[]"), "{}", text);
            }
        }
    }

    #[test]
    fn arbitrary_claims_never_panic(claim in ".{0,200}") {
        let profiles = Profiles::builtin();
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).expect("sample");
        v["impersonatedUser"]["extra"]["original-user-info.impersonation-proxy.concierge.pinniped.dev"] = serde_json::json!([claim]);
        check(&v.to_string(), &profiles);
    }
}
