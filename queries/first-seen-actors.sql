-- question: Which actors appeared for the first time inside a time window?
-- param: since = 1970-01-01T00:00:00Z -- window start (RFC 3339, inclusive)
-- param: until = 2100-01-01T00:00:00Z -- window end (RFC 3339, exclusive)
SELECT actor_username, actor_kind,
       MIN(request_received_at) AS first_seen,
       COUNT(*) AS requests
FROM requests
WHERE actor_username IS NOT NULL AND actor_username <> ''
GROUP BY actor_username, actor_kind
HAVING MIN(request_received_at) >= to_timestamp_micros({{since}})
   AND MIN(request_received_at) < to_timestamp_micros({{until}})
ORDER BY first_seen, actor_username, actor_kind
