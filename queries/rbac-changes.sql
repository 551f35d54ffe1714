-- question: Which RBAC bindings and roles were created, changed or deleted, and by whom (resolved through proxies)?
SELECT request_received_at, cluster, actor_username, resolution, acted_as_username,
       verb, resource, namespace, name, response_code, decision, request_object
FROM requests
WHERE api_group = 'rbac.authorization.k8s.io'
  AND resource IN ('roles', 'rolebindings', 'clusterroles', 'clusterrolebindings')
  AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection')
ORDER BY request_received_at, audit_id
