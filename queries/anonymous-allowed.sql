-- question: Which requests by system:anonymous (directly or as an impersonation target) were allowed?
SELECT request_uri, verb, authn_username, acted_as_username,
       COUNT(*) AS requests,
       MIN(request_received_at) AS first_seen,
       MAX(request_received_at) AS last_seen
FROM requests
WHERE (actor_username = 'system:anonymous' OR acted_as_username = 'system:anonymous')
  AND decision = 'allow'
GROUP BY request_uri, verb, authn_username, acted_as_username
ORDER BY requests DESC, request_uri, verb, authn_username, acted_as_username
