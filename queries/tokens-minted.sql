-- question: Which service-account tokens were minted (TokenRequest), by whom, and how often was each issued credential used afterwards?
WITH minted AS (
  SELECT annotations['authentication.kubernetes.io/issued-credential-id'] AS issued_credential_id,
         request_received_at AS minted_at, cluster, actor_username AS minted_by,
         namespace, name AS service_account
  FROM requests
  WHERE resource = 'serviceaccounts' AND subresource = 'token' AND verb = 'create'
), used AS (
  -- Only credentials minted here are counted: grouping every credential of
  -- the lake held one group per token ever used (out of memory at 100M events).
  SELECT cluster, credential_id, COUNT(*) AS uses, MAX(request_received_at) AS last_used
  FROM requests
  WHERE credential_id IN (SELECT issued_credential_id FROM minted)
  GROUP BY cluster, credential_id
)
SELECT m.minted_at, m.cluster, m.minted_by, m.namespace, m.service_account, m.issued_credential_id,
       COALESCE(u.uses, 0) AS uses, u.last_used
FROM minted m
LEFT JOIN used u ON u.cluster = m.cluster AND u.credential_id = m.issued_credential_id
ORDER BY m.minted_at, m.issued_credential_id, m.cluster
