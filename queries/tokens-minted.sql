-- question: Which service-account tokens were minted (TokenRequest), by whom, and how often was each issued credential used afterwards?
WITH minted AS (
  SELECT annotations['authentication.kubernetes.io/issued-credential-id'] AS issued_credential_id,
         request_received_at AS minted_at, cluster, actor_username AS minted_by,
         namespace, name AS service_account
  FROM requests
  WHERE resource = 'serviceaccounts' AND subresource = 'token' AND verb = 'create'
), used AS (
  -- Only credentials minted here are counted, and the joins are written so
  -- that the small side is the one held in memory (the engine builds its
  -- hash table from the left input): counting every credential of the lake
  -- ran out of memory at 100M events.
  SELECT r.cluster, r.credential_id, COUNT(*) AS uses, MAX(r.request_received_at) AS last_used
  FROM (SELECT DISTINCT cluster, issued_credential_id FROM minted) k
  JOIN requests r ON r.cluster = k.cluster AND r.credential_id = k.issued_credential_id
  GROUP BY r.cluster, r.credential_id
)
SELECT m.minted_at, m.cluster, m.minted_by, m.namespace, m.service_account, m.issued_credential_id,
       COALESCE(u.uses, 0) AS uses, u.last_used
FROM used u
RIGHT JOIN minted m ON u.cluster = m.cluster AND u.credential_id = m.issued_credential_id
ORDER BY m.minted_at, m.issued_credential_id, m.cluster
