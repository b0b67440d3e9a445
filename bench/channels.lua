-- wrk -s bench/channels.lua URL -- N: scans as printed on N posters, `?ch=poster-1` ..
-- `?ch=poster-N` in rotation (N = 0: the URL as given, no channel). The requests are built once,
-- in init, with wrk's headers (-H), so each request costs wrk one Lua call, on both sides of the
-- scan_channels pair.
local requests = {}
local i = 0

function init(args)
  local n = tonumber(args[1] or "4")
  if n == 0 then
    requests[1] = wrk.format(nil, wrk.path)
  else
    for k = 1, n do
      requests[k] = wrk.format(nil, wrk.path .. "?ch=poster-" .. k)
    end
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end
