-- question: Which requests carried a proxy identity claim that was not believed: spoofed (sent by an identity that is not a configured proxy) or malformed (from a proxy, but unreadable)?
SELECT request_received_at, cluster, claim_status, resolution, authn_username, impersonated_username,
       original_claim_raw, verb, resource, namespace, name, source_ips, user_agent
FROM requests
WHERE claim_status IN ('spoofed', 'malformed')
ORDER BY request_received_at, audit_id
