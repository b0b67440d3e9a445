-- Start deleting a pool: its hash goes at once (scans see an unknown pool and write nothing, no
-- group can be added) and a marker keeps the id from being created again until the caller has
-- removed the rest and dropped the marker.
-- KEYS[1] pool hash. ARGV[1] key prefix. Returns 'ok' | 'not_found'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
redis.call('DEL', KEYS[1])
redis.call('SET', ARGV[1] .. KEY.deleting, '1', 'EX', 600)
return 'ok'
