-- question: Everything one actor did through any impersonating proxy (Pinniped, kube-oidc-proxy, Rancher, Azure Arc), newest first.
-- param: actor -- resolved actor (the human behind the proxy)
SELECT request_received_at, cluster, proxy_profile, resolution, acted_as_username,
       verb, resource, subresource, namespace, name, response_code, decision, audit_id
FROM requests
WHERE actor_username = {{actor}}
  AND proxy_profile IS NOT NULL
ORDER BY request_received_at DESC, audit_id
LIMIT 1000
