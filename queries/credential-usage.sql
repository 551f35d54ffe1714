-- question: Where was one credential (credential-id JTI=... or X509SHA256=...) used: by which actor, from which pods, nodes and addresses?
-- param: credential -- authentication.kubernetes.io/credential-id value
SELECT request_received_at, cluster, actor_username, pod_name, node_name, source_ips,
       user_agent, verb, resource, namespace, name, response_code
FROM requests
WHERE credential_id = {{credential}} OR authn_credential_id = {{credential}}
ORDER BY request_received_at, audit_id
