-- question: Who deleted Kubernetes Events (a way to cover tracks)?
SELECT request_received_at, cluster, actor_username, resolution, acted_as_username,
       verb, namespace, name, response_code
FROM requests
WHERE resource = 'events'
  AND verb IN ('delete', 'deletecollection')
ORDER BY request_received_at, audit_id
