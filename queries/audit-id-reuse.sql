-- question: Which audit IDs were shared by different requests? A client may set the Audit-ID header itself, and a tool that keys on it shows one request where there were several: each request is listed with its actor, verb, object and time.
SELECT audit_id, cluster, request_received_at, actor_username, authn_username, resolution,
       verb, resource, namespace, name, response_code, source_ips, user_agent
FROM audit_id_reuse
ORDER BY audit_id, request_received_at, authn_username, verb, request_uri
