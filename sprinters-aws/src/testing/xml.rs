//! The XML of EC2's and STS's Query API answers, as much as the SDK's
//! deserializers read.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{STAND_IN_ACCOUNT, StandInInstance};

/// An answer being written.
pub(super) struct Xml {
    body: String,
    close: String,
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `2026-12-01T10:00:00Z`.
pub(super) fn timestamp(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn state_code(state: &str) -> u8 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        _ => 80,
    }
}

impl Xml {
    /// `<{action}Response xmlns=EC2>`.
    pub(super) fn response(action: &str) -> Self {
        Self {
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>stand-in</requestId>"
            ),
            close: format!("</{action}Response>"),
        }
    }

    /// `<{action}Response xmlns=STS><{action}Result>`.
    pub(super) fn sts_response(action: &str) -> Self {
        Self {
            body: format!(
                "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>"
            ),
            close: format!(
                "</{action}Result><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></{action}Response>"
            ),
        }
    }

    pub(super) fn raw(mut self, xml: &str) -> Self {
        self.body.push_str(xml);
        self
    }

    fn instance(out: &mut String, i: &StandInInstance) {
        let _ = write!(
            out,
            "<item><instanceId>{}</instanceId><imageId>{}</imageId><instanceState><code>{}</code><name>{}</name></instanceState>\
             <instanceType>{}</instanceType><placement><availabilityZone>{}</availabilityZone></placement>\
             <subnetId>{}</subnetId><launchTime>{}</launchTime>",
            i.id,
            escape(&i.image_id),
            state_code(&i.state),
            i.state,
            escape(&i.instance_type),
            i.zone,
            i.subnet_id,
            // The wall clock of the launch: its Instant is the stand-in's.
            timestamp(SystemTime::now() - i.launched.elapsed())
        );
        if i.spot {
            out.push_str("<instanceLifecycle>spot</instanceLifecycle>");
        }
        if let Some(token) = &i.client_token {
            let _ = write!(out, "<clientToken>{}</clientToken>", escape(token));
        }
        out.push_str("<tagSet>");
        for (k, v) in &i.tags {
            let _ = write!(
                out,
                "<item><key>{}</key><value>{}</value></item>",
                escape(k),
                escape(v)
            );
        }
        out.push_str("</tagSet></item>");
    }

    /// `RunInstances`' answer: one reservation, inline.
    pub(super) fn instances(mut self, instances: &[StandInInstance]) -> Self {
        let _ = write!(
            self.body,
            "<reservationId>r-0standin</reservationId><ownerId>{STAND_IN_ACCOUNT}</ownerId><instancesSet>"
        );
        for i in instances {
            Self::instance(&mut self.body, i);
        }
        self.body.push_str("</instancesSet>");
        self
    }

    /// `DescribeInstances`' answer: one reservation per instance.
    pub(super) fn reservations(mut self, instances: &[StandInInstance]) -> Self {
        self.body.push_str("<reservationSet>");
        for i in instances {
            let _ = write!(
                self.body,
                "<item><reservationId>r-{}</reservationId><ownerId>{STAND_IN_ACCOUNT}</ownerId><instancesSet>",
                i.id.trim_start_matches("i-")
            );
            Self::instance(&mut self.body, i);
            self.body.push_str("</instancesSet></item>");
        }
        self.body.push_str("</reservationSet>");
        self
    }

    /// `TerminateInstances`' answer: (id, previous state) each.
    pub(super) fn state_changes(mut self, changes: &[(String, String)]) -> Self {
        self.body.push_str("<instancesSet>");
        for (id, previous) in changes {
            let _ = write!(
                self.body,
                "<item><instanceId>{id}</instanceId><currentState><code>48</code><name>terminated</name></currentState>\
                 <previousState><code>{}</code><name>{previous}</name></previousState></item>",
                state_code(previous)
            );
        }
        self.body.push_str("</instancesSet>");
        self
    }

    pub(super) fn finish(mut self) -> String {
        self.body.push_str(&self.close);
        self.body
    }
}
