-- question: Which requests ran as a privileged identity through impersonation or a proxy (system:masters, cluster-admin, nodes, kube-system service accounts), and who was really behind them?
SELECT request_received_at, cluster, actor_username, authn_username, acted_as_username, acted_as_groups,
       resolution, claim_status, verb, resource, namespace, name, decision
FROM requests
WHERE resolution <> 'direct'
  AND (array_has(acted_as_groups, 'system:masters')
       OR acted_as_username IN ('cluster-admin', 'cluster-admin-breakglass', 'kubernetes-admin')
       OR acted_as_username LIKE 'system:node:%'
       OR acted_as_username LIKE 'system:serviceaccount:kube-system:%'
       OR decision_reason LIKE '%ClusterRole "cluster-admin"%')
ORDER BY request_received_at, audit_id
