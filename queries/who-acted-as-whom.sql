-- question: Who acted as whom: every impersonation and proxy chain (authenticated identity, proxy, resolved actor, identity used, constrained-impersonation mode), with counts and time span.
SELECT authn_username, proxy_profile, actor_username, acted_as_username, resolution, claim_status,
       impersonation_constraint,
       COUNT(*) AS requests,
       MIN(request_received_at) AS first_seen,
       MAX(request_received_at) AS last_seen
FROM requests
WHERE resolution <> 'direct'
GROUP BY authn_username, proxy_profile, actor_username, acted_as_username, resolution, claim_status, impersonation_constraint
ORDER BY requests DESC, actor_username, acted_as_username, authn_username, proxy_profile, resolution, claim_status, impersonation_constraint
