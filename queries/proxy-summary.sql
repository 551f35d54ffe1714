-- question: For each configured proxy, how much traffic went through it, for how many distinct people, and how many claims were nested, spoofed or malformed?
SELECT proxy_profile,
       COUNT(*) AS requests,
       COUNT(DISTINCT actor_username) AS actors,
       SUM(CASE WHEN resolution = 'proxy_nested' THEN 1 ELSE 0 END) AS nested,
       SUM(CASE WHEN claim_status = 'spoofed' THEN 1 ELSE 0 END) AS spoofed,
       SUM(CASE WHEN claim_status = 'malformed' THEN 1 ELSE 0 END) AS malformed
FROM requests
WHERE proxy_profile IS NOT NULL
GROUP BY proxy_profile
ORDER BY requests DESC, proxy_profile
