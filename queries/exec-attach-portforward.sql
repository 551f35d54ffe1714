-- question: Who opened exec, attach or port-forward sessions into pods, and where?
SELECT actor_username, resolution, subresource, namespace, name,
       COUNT(*) AS sessions,
       MIN(request_received_at) AS first_seen,
       MAX(request_received_at) AS last_seen
FROM requests
WHERE resource = 'pods'
  AND subresource IN ('exec', 'attach', 'portforward')
GROUP BY actor_username, resolution, subresource, namespace, name
ORDER BY sessions DESC, actor_username, namespace, name, subresource, resolution
