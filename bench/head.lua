-- wrk -s bench/head.lua: every request is a HEAD (a link checker or a cautious client).
-- livecode must answer it without Redis and without consuming capacity.
wrk.method = "HEAD"
