-- question: Which service-account credentials were used from more than one pod or node (a bound token replayed somewhere it was not issued for)?
SELECT credential_id, actor_username,
       COUNT(DISTINCT pod_name) AS pods,
       COUNT(DISTINCT node_name) AS nodes,
       array_sort(array_agg(DISTINCT pod_name)) AS pod_names,
       array_sort(array_agg(DISTINCT node_name)) AS node_names,
       COUNT(*) AS requests
FROM requests
WHERE actor_kind = 'serviceaccount'
  AND credential_id IS NOT NULL
GROUP BY credential_id, actor_username
HAVING COUNT(DISTINCT pod_name) > 1 OR COUNT(DISTINCT node_name) > 1
ORDER BY requests DESC, credential_id
