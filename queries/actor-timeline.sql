-- question: Activity timeline of one identity: everything it did, as actor, as the identity acted as, or as the authenticated (proxy) identity.
-- param: actor -- username to follow
SELECT request_received_at, cluster,
       CASE WHEN actor_username = {{actor}} THEN 'actor'
            WHEN acted_as_username = {{actor}} THEN 'acted_as'
            ELSE 'authenticated' END AS role,
       actor_username, acted_as_username, resolution, verb, resource, subresource, namespace, name,
       response_code, decision
FROM requests
WHERE actor_username = {{actor}} OR acted_as_username = {{actor}} OR authn_username = {{actor}}
ORDER BY request_received_at, audit_id
