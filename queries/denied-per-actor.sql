-- question: Which actors were denied (authorization forbid, HTTP 401/403), how often, and on what?
SELECT actor_username, actor_kind, resolution,
       COUNT(*) AS denied,
       COUNT(DISTINCT resource) AS resources,
       MIN(request_received_at) AS first_seen,
       MAX(request_received_at) AS last_seen
FROM requests
WHERE decision = 'forbid' OR response_code IN (401, 403)
GROUP BY actor_username, actor_kind, resolution
ORDER BY denied DESC, actor_username, actor_kind, resolution
