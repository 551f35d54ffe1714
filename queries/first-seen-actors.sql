-- question: Which actors appeared for the first time inside the window (--since, --until)? First seen ever, not first inside the window: the rows before --since are read too.
-- window: history
SELECT actor_username, actor_kind,
       MIN(request_received_at) AS first_seen,
       COUNT(*) AS requests
FROM requests
WHERE actor_username IS NOT NULL AND actor_username <> ''
GROUP BY actor_username, actor_kind
HAVING MIN(request_received_at) >= {{since}}
ORDER BY first_seen, actor_username, actor_kind
