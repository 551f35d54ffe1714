-- question: Which humans read or changed Secrets, directly or through a proxy?
SELECT request_received_at, cluster, actor_username, resolution, proxy_profile, acted_as_username,
       verb, namespace, name, response_code, decision
FROM requests
WHERE resource = 'secrets'
  AND actor_kind = 'user'
ORDER BY request_received_at, audit_id
