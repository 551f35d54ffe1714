//! Deterministic synthetic audit traffic for the demo, tests and benches.
//!
//! Every identity scenario the resolver knows is represented, with the field
//! shapes kube-apiserver really writes (6-digit UTC timestamps, UUID audit
//! IDs, bound service-account token extras, RBAC reasons, several stages per
//! request, the occasional duplicate delivery). The same seed always yields
//! the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::io::{self, Write};

pub const PINNIPED_SA: &str =
    "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy";
pub const PINNIPED_KEY: &str = "original-user-info.impersonation-proxy.concierge.pinniped.dev";
/// The kube-oidc-proxy identity the generator uses; the demo activates the
/// kube-oidc-proxy profile with it.
pub const OIDC_PROXY_SA: &str = "system:serviceaccount:kube-oidc-proxy:kube-oidc-proxy";
pub const RANCHER_PREFIX: &str =
    "system:serviceaccount:cattle-impersonation-system:cattle-impersonation-";
pub const ARC_SA: &str = "system:serviceaccount:azure-arc:azure-arc-kube-aad-proxy-sa";

/// 2026-11-20T08:00:00Z
const BASE_US: i64 = 1_795_161_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One Event per line, as the log backend writes.
    #[value(name = "jsonl")]
    JsonLines,
    /// One EventList per line, as the webhook backend posts.
    #[value(name = "eventlist")]
    EventList,
    /// One CloudWatch Logs subscription payload (decoded) per line, as
    /// EKS delivers to Kinesis, Firehose and Lambda.
    #[value(name = "eks")]
    Eks,
    /// One Event Hub message (`{"records":[…]}`) per line, as AKS
    /// diagnostic settings send.
    #[value(name = "aks")]
    Aks,
    /// One Cloud Audit Logs entry per line for each request's last stage,
    /// as GKE's Cloud Logging exports.
    #[value(name = "gke")]
    Gke,
}

impl Format {
    /// Whether events are written `batch` to a line.
    pub fn batched(self) -> bool {
        matches!(self, Format::EventList | Format::Eks | Format::Aks)
    }
}

pub struct Generator {
    rng: ChaCha8Rng,
    now_us: i64,
    emitted: u64,
}

const HUMANS: &[&str] = &[
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
];
const NAMESPACES: &[&str] = &["prod", "staging", "payments", "kube-system", "monitoring"];
const UAS: &[&str] = &[
    "kubectl/v1.34.2 (linux/amd64) kubernetes/9f1e3c2",
    "kubectl/v1.33.1 (darwin/arm64) kubernetes/8e2a1b0",
    "k9s/v0.50.4 (linux/amd64)",
    "Go-http-client/2.0",
];

/// The kinds the generator touches that belong to no namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "clusterrolebindings",
    "clusterroles",
    "nodes",
    "namespaces",
    "persistentvolumes",
    "certificatesigningrequests",
    "customresourcedefinitions",
];

/// Objects of each resource in each namespace.
const OBJECTS_PER_KIND: u32 = 64;

/// Pods behind each workload service account.
const PODS_PER_ACCOUNT: u32 = 3;

/// A number that depends only on `parts`: identities that are stable in a
/// real cluster (uids, pod names, certificates) are derived, not drawn.
fn stable_u64(parts: &[&str]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

fn stable_hex(parts: &[&str], n: usize) -> String {
    let mut out = String::with_capacity(n + 16);
    let mut round = 0u64;
    while out.len() < n {
        let r = round.to_string();
        let mut with_round = parts.to_vec();
        with_round.push(&r);
        out.push_str(&format!("{:016x}", stable_u64(&with_round)));
        round += 1;
    }
    out.truncate(n);
    out
}

fn stable_uuid(parts: &[&str]) -> String {
    uuid_shape(&stable_hex(parts, 32))
}

/// A version-4-looking UUID from 32 hex digits.
fn uuid_shape(h: &str) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A request under construction; turned into one or more stage events.
struct Req {
    verb: &'static str,
    uri: String,
    resource: Option<(&'static str, String, String, &'static str)>, // resource, ns, name, group
    subresource: Option<&'static str>,
    user: Value,
    impersonated: Option<Value>,
    ips: Vec<String>,
    ua: &'static str,
    code: i32,
    annotations: Map<String, Value>,
    request_object: Option<Value>,
    long_running: bool,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_us: BASE_US,
            emitted: 0,
        }
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn uuid(&mut self) -> String {
        let a: u128 = self.rng.random();
        uuid_shape(&format!("{a:032x}"))
    }

    /// The hour (since the epoch) of the request being generated: bound
    /// service-account tokens are modelled as rotating hourly.
    fn token_epoch(&self) -> i64 {
        self.now_us.div_euclid(3_600_000_000)
    }

    fn human(&mut self) -> Value {
        let name = self.pick(HUMANS);
        // One client certificate per person.
        let fp = stable_hex(&["x509", name], 64);
        json!({"username": name, "groups": ["devs", "system:authenticated"],
               "extra": {"authentication.kubernetes.io/credential-id": [format!("X509SHA256={fp}")]}})
    }

    /// A request from one of the service account's pods. A cluster has a
    /// stable population: each account has a fixed uid and a few pods
    /// (name, uid, node fixed), and each pod's bound token (its JTI) lasts an
    /// hour, so credential ids repeat the way they do in real audit logs.
    fn service_account(&mut self, ns: &str, sa: &str) -> Value {
        let replica = self.rng.random_range(0..PODS_PER_ACCOUNT).to_string();
        let pod_key = [ns, sa, replica.as_str()];
        let pod = format!("{sa}-{}", stable_hex(&pod_key, 5));
        let node = format!("worker-{}", 1 + stable_u64(&pod_key) % 5);
        let uid = stable_uuid(&["sa", ns, sa]);
        let pod_uid = stable_uuid(&["pod", ns, sa, replica.as_str()]);
        let node_uid = stable_uuid(&["node", node.as_str()]);
        let epoch = self.token_epoch().to_string();
        let jti = stable_uuid(&["jti", ns, sa, replica.as_str(), epoch.as_str()]);
        json!({"username": format!("system:serviceaccount:{ns}:{sa}"), "uid": uid,
               "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
               "extra": {
                 "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
                 "authentication.kubernetes.io/node-name": [node],
                 "authentication.kubernetes.io/node-uid": [node_uid],
                 "authentication.kubernetes.io/pod-name": [pod],
                 "authentication.kubernetes.io/pod-uid": [pod_uid]}})
    }

    fn proxy_sa(&mut self, username: &str) -> Value {
        let ns = username.split(':').nth(2).unwrap_or("default").to_string();
        let epoch = self.token_epoch().to_string();
        let jti = stable_uuid(&["jti", username, epoch.as_str()]);
        let uid = stable_uuid(&["sa", username]);
        json!({"username": username, "uid": uid,
               "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
               "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={jti}")]}})
    }

    fn client_ip(&mut self) -> String {
        format!("203.0.113.{}", self.rng.random_range(1..255))
    }

    fn pod_ip(&mut self) -> String {
        format!(
            "10.244.{}.{}",
            self.rng.random_range(0..4),
            self.rng.random_range(2..250)
        )
    }

    fn rbac_allow(&self, who: &str) -> Value {
        json!(format!("RBAC: allowed by ClusterRoleBinding \"edit-{0}\" of ClusterRole \"edit\" to User \"{0}\"", who.split('@').next().unwrap_or(who)))
    }

    fn resource_req(
        &mut self,
        verbs: &[&'static str],
        resource: &'static str,
        group: &'static str,
        ns: &str,
    ) -> Req {
        let verb = self.pick(verbs);
        // Cluster-scoped kinds live in no namespace: no `/namespaces/…` in
        // their URI, no namespace in their objectRef.
        let ns = if CLUSTER_SCOPED.contains(&resource) {
            ""
        } else {
            ns
        };
        // Each namespace holds a fixed set of objects per resource, which
        // clients touch again and again.
        let object = self.rng.random_range(0..OBJECTS_PER_KIND).to_string();
        let name = format!(
            "{}-{}",
            resource.trim_end_matches('s'),
            stable_hex(&[ns, resource, object.as_str()], 4)
        );
        let base = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let scope = if ns.is_empty() {
            String::new()
        } else {
            format!("/namespaces/{ns}")
        };
        let uri = if verb == "list" || verb == "create" {
            format!("{base}{scope}/{resource}")
        } else {
            format!("{base}{scope}/{resource}/{name}")
        };
        let ip = self.client_ip();
        let ua = self.pick(UAS);
        Req {
            verb,
            uri,
            resource: Some((resource, ns.to_string(), name, group)),
            subresource: None,
            user: Value::Null,
            impersonated: None,
            ips: vec![ip],
            ua,
            code: if verb == "create" { 201 } else { 200 },
            annotations: Map::new(),
            request_object: None,
            long_running: false,
        }
    }

    /// One request of a randomly chosen scenario.
    fn request(&mut self) -> Req {
        let roll = self.rng.random_range(0..1000);
        let ns = self.pick(NAMESPACES);
        match roll {
            // Controllers and workloads with bound tokens.
            0..=249 => {
                let (sa_ns, sa) = self.pick(&[
                    ("kube-system", "replicaset-controller"),
                    ("kube-system", "deployment-controller"),
                    ("monitoring", "prometheus"),
                    ("prod", "api-backend"),
                    ("payments", "ledger"),
                ]);
                let verb = self.pick(&["get", "list", "watch", "update", "patch"]);
                let res = self.pick(&["pods", "configmaps", "endpoints", "leases"]);
                let group = if res == "leases" {
                    "coordination.k8s.io"
                } else {
                    ""
                };
                let mut r = self.resource_req(&[verb], res, group, sa_ns);
                r.user = self.service_account(sa_ns, sa);
                r.ips = vec![self.pod_ip()];
                r.ua = "kube-controller-manager/v1.34.2 (linux/amd64) kubernetes/9f1e3c2/system:serviceaccount";
                r.long_running = verb == "watch";
                let who = r.user["username"].as_str().unwrap_or("").to_string();
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations
                    .insert("authorization.k8s.io/reason".into(), self.rbac_allow(&who));
                r
            }
            // Humans directly with client certificates.
            250..=479 => {
                let verb = self.pick(&["get", "list", "get", "create", "delete", "patch"]);
                let res = self.pick(&["pods", "deployments", "secrets", "services", "configmaps"]);
                let group = if res == "deployments" { "apps" } else { "" };
                let mut r = self.resource_req(&[verb], res, group, ns);
                r.user = self.human();
                let who = r.user["username"].as_str().unwrap_or("").to_string();
                if ns == "kube-system" && verb != "get" && verb != "list" {
                    r.code = 403;
                    r.annotations
                        .insert("authorization.k8s.io/decision".into(), json!("forbid"));
                    r.annotations
                        .insert("authorization.k8s.io/reason".into(), json!(""));
                } else {
                    r.annotations
                        .insert("authorization.k8s.io/decision".into(), json!("allow"));
                    r.annotations
                        .insert("authorization.k8s.io/reason".into(), self.rbac_allow(&who));
                }
                r
            }
            // Kubelets.
            480..=579 => {
                let node = format!("system:node:worker-{}", self.rng.random_range(1..6));
                let mut r = self.resource_req(&["get", "patch", "update"], "nodes", "", ns);
                r.resource = r
                    .resource
                    .map(|(res, _, _, g)| (res, String::new(), node[12..].to_string(), g));
                r.uri = format!("/api/v1/nodes/{}/status", &node[12..]);
                r.subresource = Some("status");
                r.user =
                    json!({"username": node, "groups": ["system:nodes", "system:authenticated"]});
                r.ips = vec![format!("10.0.0.{}", self.rng.random_range(10..20))];
                r.ua = "kubelet/v1.34.2 (linux/amd64) kubernetes/9f1e3c2";
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations
                    .insert("authorization.k8s.io/reason".into(), json!(""));
                r
            }
            // Control-plane components.
            580..=659 => {
                let who = self.pick(&[
                    "system:kube-controller-manager",
                    "system:kube-scheduler",
                    "system:apiserver",
                ]);
                let mut r = self.resource_req(
                    &["get", "update", "list"],
                    "leases",
                    "coordination.k8s.io",
                    "kube-system",
                );
                r.user = json!({"username": who, "groups": ["system:authenticated"]});
                r.ips = vec!["127.0.0.1".into()];
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations.insert("authorization.k8s.io/reason".into(), json!(format!("RBAC: allowed by ClusterRoleBinding \"{who}\" of ClusterRole \"{who}\" to User \"{who}\"")));
                r
            }
            // Pinniped impersonation proxy, plain.
            660..=739 => {
                let res = self.pick(&["pods", "secrets", "deployments", "pods"]);
                let group = if res == "deployments" { "apps" } else { "" };
                let mut r = self.resource_req(&["get", "list", "get", "delete"], res, group, ns);
                r.user = self.proxy_sa(PINNIPED_SA);
                let mut h = self.human();
                if let Some(g) = h.get_mut("groups") {
                    *g = json!(["platform-admins", "system:authenticated"]);
                }
                r.impersonated = Some(h);
                r.ips = vec![self.client_ip(), self.pod_ip()];
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations.insert("authorization.k8s.io/reason".into(), json!("RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"admin\" to Group \"platform-admins\""));
                r
            }
            // Pinniped nested impersonation: a human acting as a bot or admin.
            740..=779 => {
                let target = self.pick(&[
                    "ops-bot",
                    "cluster-admin-breakglass",
                    "system:serviceaccount:kube-system:deployment-controller",
                ]);
                let res = self.pick(&["secrets", "clusterrolebindings", "pods"]);
                let group = if res == "clusterrolebindings" {
                    "rbac.authorization.k8s.io"
                } else {
                    ""
                };
                let mut r = self.resource_req(&["get", "create", "delete"], res, group, ns);
                r.user = self.proxy_sa(PINNIPED_SA);
                let orig = self.human();
                let groups = if target == "cluster-admin-breakglass" {
                    json!(["system:masters", "system:authenticated"])
                } else {
                    json!(["bots", "system:authenticated"])
                };
                r.impersonated = Some(json!({"username": target, "groups": groups,
                    "extra": {PINNIPED_KEY: [orig.to_string()]}}));
                r.ips = vec![self.client_ip(), self.pod_ip()];
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations.insert("authorization.k8s.io/reason".into(), json!("RBAC: allowed by ClusterRoleBinding \"bots\" of ClusterRole \"admin\" to Group \"bots\""));
                r
            }
            // Pinniped with an unreadable claim.
            780..=784 => {
                let mut r = self.resource_req(&["get"], "secrets", "", ns);
                r.user = self.proxy_sa(PINNIPED_SA);
                r.impersonated = Some(
                    json!({"username": "ops-bot", "groups": ["bots", "system:authenticated"],
                    "extra": {PINNIPED_KEY: ["{\"groups\":[\"admins\"]"]}}),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Someone who is not the proxy forging Pinniped's claim.
            785..=789 => {
                let mut r = self.resource_req(&["get"], "secrets", "", "payments");
                r.user = json!({"username": "mallory@example.com", "groups": ["contractors", "system:authenticated"]});
                r.impersonated = Some(
                    json!({"username": "ops-bot", "groups": ["bots", "system:authenticated"],
                    "extra": {PINNIPED_KEY: ["{\"username\":\"alice@example.com\",\"groups\":[\"platform-admins\"]}"]}}),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations.insert("authorization.k8s.io/reason".into(), json!("RBAC: allowed by ClusterRoleBinding \"impersonators\" of ClusterRole \"impersonator\" to User \"mallory@example.com\""));
                r
            }
            // kubectl --as superman --as-group system:masters
            790..=809 => {
                let mut r = self.resource_req(&["list", "get"], "pods", "", ns);
                r.user = json!({"username": "kubecfg", "groups": ["system:authenticated"]});
                let target = self.pick(&[
                    "superman",
                    "system:serviceaccount:kube-system:default",
                    "system:node:worker-1",
                ]);
                r.impersonated = Some(
                    json!({"username": target, "groups": ["system:masters", "system:authenticated"]}),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r.annotations
                    .insert("authorization.k8s.io/reason".into(), json!(""));
                r
            }
            // kube-oidc-proxy, plain and nested.
            810..=839 => {
                let mut r = self.resource_req(&["get", "list", "create"], "configmaps", "", ns);
                r.user = self.proxy_sa(OIDC_PROXY_SA);
                let who = self.pick(HUMANS);
                let ip = self.client_ip();
                if roll < 825 {
                    r.impersonated = Some(
                        json!({"username": format!("oidc:{who}"), "groups": ["oidc:sre", "system:authenticated"],
                        "extra": {"remote-client-ip": [ip]}}),
                    );
                } else {
                    r.impersonated = Some(
                        json!({"username": "deployer", "groups": ["deployers", "system:authenticated"],
                        "extra": {"originaluser.jetstack.io-user": [format!("oidc:{who}")],
                                  "originaluser.jetstack.io-groups": ["oidc:sre"],
                                  "originaluser.jetstack.io-extra": ["{\"scopes\":[\"openid\"]}"],
                                  "remote-client-ip": [ip]}}),
                    );
                }
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Rancher downstream impersonation.
            840..=869 => {
                // A handful of Rancher users, each with a fixed id.
                let user = self.rng.random_range(0..4u32).to_string();
                let uid = format!("u-{}", stable_hex(&["rancher", user.as_str()], 5));
                let mut r =
                    self.resource_req(&["get", "list", "update"], "deployments", "apps", ns);
                r.user = self.proxy_sa(&format!("{RANCHER_PREFIX}{uid}"));
                r.impersonated = Some(
                    json!({"username": uid, "groups": ["system:authenticated", "system:cattle:authenticated"],
                    "extra": {"principalid": [format!("local://{uid}")], "username": ["admin"],
                              "requesttokenid": [format!("kubeconfig-{uid}")], "requesthost": ["rancher.example.com"]}}),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Azure Arc cluster connect.
            870..=889 => {
                let mut r = self.resource_req(&["get", "list"], "pods", "", ns);
                r.user = self.proxy_sa(ARC_SA);
                let oid = stable_uuid(&["aad", "frank@contoso.com"]);
                r.impersonated = Some(
                    json!({"username": "frank@contoso.com", "groups": ["aad:ops", "system:authenticated"],
                    "extra": {"oid": [oid]}}),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Anonymous and failed authentication.
            890..=914 => {
                let ip = self.client_ip();
                if roll < 905 {
                    let path = self.pick(&["/healthz", "/version", "/readyz"]);
                    Req { verb: "get", uri: path.into(), resource: None, subresource: None,
                        user: json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
                        impersonated: None, ips: vec![ip], ua: "curl/8.5.0", code: 200,
                        annotations: [("authorization.k8s.io/decision".to_string(), json!("allow")),
                                      ("authorization.k8s.io/reason".to_string(), json!("RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\""))].into_iter().collect(),
                        request_object: None, long_running: false }
                } else {
                    Req {
                        verb: "list",
                        uri: "/api/v1/secrets".into(),
                        resource: None,
                        subresource: None,
                        user: json!({}),
                        impersonated: None,
                        ips: vec![ip],
                        ua: "python-requests/2.32.3",
                        code: 401,
                        annotations: Map::new(),
                        request_object: None,
                        long_running: false,
                    }
                }
            }
            // exec / attach / port-forward by humans, directly and via Pinniped.
            915..=939 => {
                let sub = self.pick(&["exec", "attach", "portforward"]);
                let mut r = self.resource_req(&["create"], "pods", "", ns);
                if let Some((_, _, name, _)) = &r.resource {
                    r.uri = format!(
                        "/api/v1/namespaces/{ns}/pods/{name}/{sub}?command=sh&stdin=true&tty=true"
                    );
                }
                r.subresource = Some(sub);
                r.code = 101;
                r.long_running = true;
                if roll % 2 == 0 {
                    r.user = self.human();
                } else {
                    r.user = self.proxy_sa(PINNIPED_SA);
                    r.impersonated = Some(self.human());
                }
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // RBAC changes.
            940..=954 => {
                let res = self.pick(&[
                    "clusterrolebindings",
                    "rolebindings",
                    "clusterroles",
                    "roles",
                ]);
                let mut r = self.resource_req(
                    &["create", "patch", "delete"],
                    res,
                    "rbac.authorization.k8s.io",
                    ns,
                );
                r.user = self.human();
                // The object sent is of the kind the URI names.
                r.request_object = Some(match res {
                    "clusterrolebindings" => {
                        json!({"kind": "ClusterRoleBinding", "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}})
                    }
                    "rolebindings" => {
                        json!({"kind": "RoleBinding", "roleRef": {"kind": "ClusterRole", "name": "admin"}})
                    }
                    "clusterroles" => {
                        json!({"kind": "ClusterRole", "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
                    }
                    _ => {
                        json!({"kind": "Role", "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})
                    }
                });
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Service-account tokens minted (TokenRequest).
            955..=974 => {
                let sa = self.pick(&["api-backend", "ledger", "default"]);
                let mut r = self.resource_req(&["create"], "serviceaccounts", "", ns);
                r.resource = Some(("serviceaccounts", ns.to_string(), sa.to_string(), ""));
                r.uri = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token");
                r.subresource = Some("token");
                r.user = if roll % 2 == 0 {
                    self.human()
                } else {
                    json!({"username": "system:node:worker-2", "groups": ["system:nodes", "system:authenticated"]})
                };
                let jti = self.uuid();
                r.annotations.insert(
                    "authentication.kubernetes.io/issued-credential-id".into(),
                    json!(format!("JTI={jti}")),
                );
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // Event deletion (covering tracks).
            975..=984 => {
                let mut r = self.resource_req(&["delete"], "events", "", ns);
                r.user = self.human();
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
            // A stolen SA token replayed from a different pod.
            _ => {
                let mut r = self.resource_req(&["list"], "secrets", "", "payments");
                let uid = stable_uuid(&["sa", "payments", "ledger"]);
                r.user = json!({"username": "system:serviceaccount:payments:ledger", "uid": uid,
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:payments", "system:authenticated"],
                    "extra": {"authentication.kubernetes.io/credential-id": ["JTI=7e3f9a52-1b2c-4d5e-8f90-stolen000001"],
                              "authentication.kubernetes.io/pod-name": [self.pick(&["ledger-7d9f8-abcde", "debug-shell-x1"])],
                              "authentication.kubernetes.io/pod-uid": ["0b1c2d3e-aaaa-4bbb-8ccc-000000000001"],
                              "authentication.kubernetes.io/node-name": [self.pick(&["worker-1", "worker-4"])],
                              "authentication.kubernetes.io/node-uid": ["9f8e7d6c-bbbb-4ccc-8ddd-000000000002"]}});
                r.annotations
                    .insert("authorization.k8s.io/decision".into(), json!("allow"));
                r
            }
        }
    }

    fn ts(us: i64) -> String {
        let secs = us.div_euclid(1_000_000);
        let micros = us.rem_euclid(1_000_000);
        let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        format!("{}.{micros:06}Z", dt.format("%Y-%m-%dT%H:%M:%S"))
    }

    /// The stage events of the next request (1 to 3, sometimes duplicated).
    pub fn next_events(&mut self) -> Vec<Value> {
        let r = self.request();
        self.now_us += self.rng.random_range(1_000..20_000);
        let received = self.now_us;
        let audit_id = self.uuid();
        let level = if r.request_object.is_some() {
            "Request"
        } else {
            "Metadata"
        };
        let mut stages: Vec<&str> = Vec::new();
        if self.rng.random_range(0..10) < 3 {
            stages.push("RequestReceived");
        }
        if r.long_running {
            stages.push("ResponseStarted");
        }
        stages.push("ResponseComplete");
        let mut out = Vec::with_capacity(stages.len() + 1);
        let mut stage_us = received;
        for stage in stages {
            let mut e = Map::new();
            e.insert("kind".into(), json!("Event"));
            e.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
            e.insert("level".into(), json!(level));
            e.insert("auditID".into(), json!(audit_id));
            e.insert("stage".into(), json!(stage));
            e.insert("requestURI".into(), json!(r.uri));
            e.insert("verb".into(), json!(r.verb));
            e.insert("user".into(), r.user.clone());
            // The audit filter runs before impersonation: RequestReceived
            // never carries impersonatedUser.
            if stage != "RequestReceived" {
                if let Some(i) = &r.impersonated {
                    e.insert("impersonatedUser".into(), i.clone());
                }
            }
            e.insert("sourceIPs".into(), json!(r.ips));
            e.insert("userAgent".into(), json!(r.ua));
            if let Some((res, ns, name, group)) = &r.resource {
                let mut o = Map::new();
                o.insert("resource".into(), json!(res));
                if !ns.is_empty() {
                    o.insert("namespace".into(), json!(ns));
                }
                if r.verb != "list" && r.verb != "create" || r.subresource.is_some() {
                    o.insert("name".into(), json!(name));
                }
                if !group.is_empty() {
                    o.insert("apiGroup".into(), json!(group));
                }
                o.insert("apiVersion".into(), json!("v1"));
                if let Some(s) = r.subresource {
                    o.insert("subresource".into(), json!(s));
                }
                e.insert("objectRef".into(), Value::Object(o));
            }
            if stage != "RequestReceived" {
                let mut st = Map::new();
                st.insert("metadata".into(), json!({}));
                st.insert("code".into(), json!(r.code));
                if r.code >= 400 {
                    st.insert("status".into(), json!("Failure"));
                    let (reason, msg) = match r.code {
                        401 => (
                            "Unauthorized",
                            "Authentication failed, attempted: bearer".to_string(),
                        ),
                        _ => ("Forbidden", format!("{} is forbidden", r.uri)),
                    };
                    st.insert("reason".into(), json!(reason));
                    st.insert("message".into(), json!(msg));
                }
                e.insert("responseStatus".into(), Value::Object(st));
            }
            if let Some(obj) = &r.request_object {
                e.insert("requestObject".into(), obj.clone());
            }
            e.insert("requestReceivedTimestamp".into(), json!(Self::ts(received)));
            e.insert("stageTimestamp".into(), json!(Self::ts(stage_us)));
            if stage != "RequestReceived" && !r.annotations.is_empty() {
                e.insert("annotations".into(), Value::Object(r.annotations.clone()));
            }
            out.push(Value::Object(e));
            stage_us += self.rng.random_range(300..9_000);
        }
        // Webhook retries deliver the same event twice now and then.
        if self.rng.random_range(0..100) == 0 {
            if let Some(last) = out.last().cloned() {
                out.push(last);
            }
        }
        out
    }

    /// Write `n` events in `format` (EventLists and envelopes of `batch`).
    pub fn write(
        &mut self,
        n: u64,
        format: Format,
        batch: usize,
        w: &mut dyn Write,
    ) -> io::Result<()> {
        let mut pending: Vec<Value> = Vec::new();
        let mut written = 0u64;
        while self.emitted < n {
            for e in self.next_events() {
                if self.emitted >= n {
                    break;
                }
                self.emitted += 1;
                match format {
                    Format::JsonLines => {
                        serde_json::to_writer(&mut *w, &e)?;
                        w.write_all(b"\n")?;
                    }
                    Format::Gke => {
                        if let Some(entry) = super::clouds::gke(&e, self.emitted) {
                            serde_json::to_writer(&mut *w, &entry)?;
                            w.write_all(b"\n")?;
                        }
                    }
                    Format::EventList => pending.push(strip_type_meta(e)),
                    Format::Eks | Format::Aks => pending.push(e),
                }
                if pending.len() >= batch.max(1) {
                    write_batch(w, format, &mut pending, &mut written)?;
                }
            }
        }
        if !pending.is_empty() {
            write_batch(w, format, &mut pending, &mut written)?;
        }
        Ok(())
    }
}

fn write_batch(
    w: &mut dyn Write,
    format: Format,
    items: &mut Vec<Value>,
    written: &mut u64,
) -> io::Result<()> {
    let line = match format {
        Format::Eks => super::clouds::eks(items, *written),
        Format::Aks => super::clouds::aks(items),
        _ => {
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        }
    };
    *written += items.len() as u64;
    serde_json::to_writer(&mut *w, &line)?;
    w.write_all(b"\n")?;
    items.clear();
    Ok(())
}

/// List items carry no kind/apiVersion, as the apiserver encodes them.
fn strip_type_meta(mut e: Value) -> Value {
    if let Some(o) = e.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    e
}

/// `n` events as JSON lines in memory (tests and benches).
pub fn jsonl(n: u64, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = Generator::new(seed).write(n, Format::JsonLines, 400, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_decodable() {
        let a = jsonl(3000, 7);
        assert_eq!(a, jsonl(3000, 7));
        assert_ne!(a, jsonl(3000, 8));
        let text = std::str::from_utf8(&a).expect("utf8");
        let profiles = crate::profiles::Profiles::builtin();
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for line in text.lines() {
            crate::decode::decode_unit(
                line,
                |d| {
                    n += 1;
                    let r = crate::resolve::resolve(&d.event, &profiles);
                    seen.insert((r.resolution, r.claim_status));
                },
                |r| panic!("generated event rejected: {:?}", r.error),
            );
        }
        assert_eq!(n, 3000);
        use crate::resolve::{ClaimStatus as C, Resolution as R};
        for want in [
            (R::Direct, C::None),
            (R::Impersonation, C::None),
            (R::Impersonation, C::Spoofed),
            (R::Proxy, C::None),
            (R::ProxyNested, C::Trusted),
            (R::ProxyClaimMalformed, C::Malformed),
        ] {
            assert!(seen.contains(&want), "scenario {want:?} missing");
        }
    }

    /// Identities that are fixed in a real cluster stay fixed: one uid per
    /// service account, one uid and node per pod, one certificate per
    /// person, one token per pod and hour.
    #[test]
    fn identities_form_a_stable_population() {
        use std::collections::{HashMap, HashSet};
        let mut g = Generator::new(3);
        let mut events = Vec::new();
        for i in 0..15_000 {
            if i == 7_500 {
                // Jump past a token lifetime.
                g.now_us += 2 * 3_600_000_000;
            }
            events.extend(g.next_events());
        }
        let mut sa_uid: HashMap<String, String> = HashMap::new();
        let mut pod: HashMap<String, (String, String)> = HashMap::new();
        let mut token: HashMap<(String, i64), String> = HashMap::new();
        let mut tokens_per_pod: HashMap<String, HashSet<String>> = HashMap::new();
        let mut cert: HashMap<String, String> = HashMap::new();
        for e in &events {
            let u = &e["user"];
            let name = u["username"].as_str().unwrap_or_default().to_string();
            let x = &u["extra"];
            let first = |k: &str| x[k][0].as_str().map(str::to_string);
            let cred = first("authentication.kubernetes.io/credential-id");
            if cred.as_deref().is_some_and(|c| c.ends_with("stolen000001")) {
                // The replayed-token scenario breaks the pattern on purpose.
                continue;
            }
            if let Some(uid) = u["uid"].as_str() {
                let prev = sa_uid
                    .entry(name.clone())
                    .or_insert_with(|| uid.to_string());
                assert_eq!(prev, uid, "{name} changed uid");
            }
            if let (Some(p), Some(puid), Some(node)) = (
                first("authentication.kubernetes.io/pod-name"),
                first("authentication.kubernetes.io/pod-uid"),
                first("authentication.kubernetes.io/node-name"),
            ) {
                let prev = pod.entry(p.clone()).or_insert((puid.clone(), node.clone()));
                assert_eq!(prev, &(puid, node), "pod {p} changed uid or node");
                let received = e["requestReceivedTimestamp"].as_str().unwrap_or_default();
                let hour = crate::decode::parse_timestamp_us(received)
                    .expect("timestamp")
                    .div_euclid(3_600_000_000);
                let jti = cred.clone().expect("pods have tokens");
                let prev = token.entry((p.clone(), hour)).or_insert(jti.clone());
                assert_eq!(prev, &jti, "pod {p} used two tokens in one hour");
                tokens_per_pod.entry(p).or_default().insert(jti);
            }
            if let Some(c) = cred.filter(|c| c.starts_with("X509SHA256=")) {
                let prev = cert.entry(name.clone()).or_insert(c.clone());
                assert_eq!(prev, &c, "{name} changed certificate");
            }
        }
        assert!(pod.len() >= 5, "workload pods: {}", pod.len());
        assert!(!cert.is_empty(), "no certificate users");
        assert!(
            tokens_per_pod.values().any(|t| t.len() > 1),
            "tokens never rotate"
        );
    }
}
