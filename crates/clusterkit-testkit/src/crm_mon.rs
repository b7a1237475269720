//! Pacemaker's `crm_mon -1 --output-as=xml --include=all`, read with just
//! enough XML for its flat elements: where resources run, their failures
//! and fail counts, which nodes are online.

/// One `crm_mon` XML document.
///
/// ```
/// use clusterkit_testkit::crm_mon::CrmMon;
/// let status = CrmMon(
///     r#"<resource id="web" role="Started" failed="false" blocked="false" nodes_running_on="1">
///          <node name="node2" id="2" cached="true"/>
///        </resource>"#
///         .to_owned(),
/// );
/// assert!(status.started("web"));
/// assert_eq!(status.running_on("web"), Some("node2"));
/// ```
#[derive(Debug, Clone)]
pub struct CrmMon(pub String);

/// The value of attribute `name` in one element's text.
pub fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// An attribute's text unescaped; crm_mon 2.1.5 escapes exit reasons
/// twice (`&amp;quot;`), so this repeats until nothing changes.
pub fn unescape(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let next = text
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        if next == text {
            return text;
        }
        text = next;
    }
}

impl CrmMon {
    /// Every `<tag …>` start tag, in document order.
    pub fn tags(&self, tag: &str) -> Vec<&str> {
        let open = format!("<{tag} ");
        let mut found = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(&open) {
            let tail = &rest[at..];
            let end = tail.find('>').map_or(tail.len(), |e| e + 1);
            found.push(&tail[..end]);
            rest = &tail[end..];
        }
        found
    }

    /// Every `<tag …>` start tag whose attribute `key` is `value`.
    pub fn elements(&self, tag: &str, key: &str, value: &str) -> Vec<&str> {
        self.tags(tag)
            .into_iter()
            .filter(|element| attr(element, key) == Some(value))
            .collect()
    }

    /// The resource's start tag.
    pub fn resource(&self, id: &str) -> Option<&str> {
        self.elements("resource", "id", id).into_iter().next()
    }

    /// Started, not failed, not blocked.
    pub fn started(&self, id: &str) -> bool {
        self.resource(id).is_some_and(|r| {
            attr(r, "role") == Some("Started")
                && attr(r, "failed") == Some("false")
                && attr(r, "blocked") == Some("false")
        })
    }

    /// Stopped cleanly: not failed, not blocked (a failed stop blocks).
    pub fn stopped(&self, id: &str) -> bool {
        self.resource(id).is_some_and(|r| {
            attr(r, "role") == Some("Stopped")
                && attr(r, "failed") == Some("false")
                && attr(r, "blocked") == Some("false")
        })
    }

    /// The node the resource runs on, when it runs on exactly one.
    pub fn running_on(&self, id: &str) -> Option<&str> {
        let start = self.0.find(&format!("<resource id=\"{id}\""))?;
        let rest = &self.0[start..];
        let head = &rest[..rest.find('>')?];
        if head.ends_with('/') || attr(head, "nodes_running_on") != Some("1") {
            return None;
        }
        let body = &rest[..rest.find("</resource>")?];
        let node = body.find("<node ")?;
        attr(&body[node..], "name")
    }

    /// The resource's fail count on `node`.
    pub fn fail_count(&self, id: &str, node: &str) -> u32 {
        let Some(start) = self.0.find(&format!("<node name=\"{node}\">")) else {
            return 0;
        };
        let section = &self.0[start..];
        let section = &section[..section.find("</node>").unwrap_or(section.len())];
        CrmMon(section.to_owned())
            .elements("resource_history", "id", id)
            .first()
            .and_then(|h| attr(h, "fail-count"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Every failed action recorded (`<failure …>` tags), of any resource.
    pub fn failures(&self) -> Vec<&str> {
        self.tags("failure")
    }

    /// The failed actions recorded for `id`'s operations.
    pub fn failures_of(&self, id: &str) -> Vec<&str> {
        let prefix = format!("{id}_");
        self.failures()
            .into_iter()
            .filter(|f| attr(f, "op_key").is_some_and(|k| k.starts_with(&prefix)))
            .collect()
    }

    /// The last result of `task` (with `interval`, for monitors) of `id`,
    /// on the first node whose history names it.
    pub fn last_rc(&self, id: &str, task: &str, interval: Option<&str>) -> Option<u32> {
        let start = self.0.find(&format!("<resource_history id=\"{id}\""))?;
        let end = self.0[start..].find("</resource_history>")? + start;
        CrmMon(self.0[start..end].to_owned())
            .elements("operation_history", "task", task)
            .into_iter()
            .filter(|op| attr(op, "interval") == interval)
            .filter_map(|op| attr(op, "rc")?.parse().ok())
            .next_back()
    }

    /// Whether a DC is elected.
    pub fn has_dc(&self) -> bool {
        self.0.contains("<current_dc present=\"true\"")
    }

    /// The nodes online, by name.
    pub fn online_nodes(&self) -> Vec<&str> {
        self.tags("node")
            .into_iter()
            .filter(|n| attr(n, "online") == Some("true"))
            .filter_map(|n| attr(n, "name"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_NODES: &str = r#"<pacemaker-result>
  <summary><current_dc present="true" version="2.1.5" name="node1" id="1"/></summary>
  <nodes>
    <node name="node1" id="1" online="true" standby="false"/>
    <node name="node2" id="2" online="false" standby="false"/>
  </nodes>
  <resources>
    <resource id="a" resource_agent="ocf:heartbeat:Dummy" role="Started" active="true" failed="false" blocked="false" nodes_running_on="1">
      <node name="node1" id="1" cached="true"/>
    </resource>
    <resource id="b" resource_agent="ocf:heartbeat:Dummy" role="Stopped" active="false" failed="false" blocked="false" nodes_running_on="0"/>
  </resources>
  <node_history>
    <node name="node1">
      <resource_history id="a" orphan="false" migration-threshold="1000000" fail-count="2"/>
    </node>
  </node_history>
  <failures>
    <failure op_key="a_monitor_10000" node="node1" exitstatus="not running" exitreason="gone &amp;quot;x&amp;quot;" exitcode="7"/>
  </failures>
</pacemaker-result>"#;

    #[test]
    fn reads_placement_failures_and_nodes() {
        let s = CrmMon(TWO_NODES.to_owned());
        assert!(s.has_dc());
        assert_eq!(s.online_nodes(), ["node1"]);
        assert!(s.started("a") && !s.started("b") && s.stopped("b"));
        assert_eq!(s.running_on("a"), Some("node1"));
        assert_eq!(s.running_on("b"), None);
        assert_eq!(s.fail_count("a", "node1"), 2);
        assert_eq!(s.fail_count("a", "node2"), 0);
        let failures = s.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            unescape(attr(failures[0], "exitreason").unwrap()),
            "gone \"x\""
        );
    }
}
